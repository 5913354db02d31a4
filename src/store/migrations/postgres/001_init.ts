/**
 * Migration 1: the tables every Store method needs. Runs with `search_path` set to the configured
 * schema, inside the migrator's transaction. Never edit a released migration: add the next number.
 * JSON documents are kept as text (not jsonb) so payloads round-trip byte for byte, key order,
 * duplicate keys and escaped U+0000 included.
 */
export default `
CREATE TABLE dead_letters (
  seq bigserial PRIMARY KEY,
  id text NOT NULL UNIQUE,
  function text NOT NULL,
  code text NOT NULL,
  event text NOT NULL,
  error text NOT NULL,
  attempts integer NOT NULL,
  first_attempt_at timestamptz NOT NULL,
  failed_at timestamptz NOT NULL
);
CREATE INDEX dead_letters_function ON dead_letters (function, seq);
CREATE INDEX dead_letters_code ON dead_letters (code, seq);

CREATE TABLE state (
  scope text NOT NULL,
  key text NOT NULL,
  value text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, key)
);

CREATE TABLE versioned_state (
  scope text NOT NULL,
  key text NOT NULL,
  value text NOT NULL,
  version bigint NOT NULL,
  PRIMARY KEY (scope, key)
);

CREATE TABLE leases (
  key text PRIMARY KEY,
  owner text NOT NULL,
  token text NOT NULL,
  attempt integer NOT NULL,
  state text NOT NULL CHECK (state IN ('held', 'released', 'done')),
  expires_at timestamptz NOT NULL
);
CREATE INDEX leases_expires_at ON leases (expires_at);

CREATE TABLE function_keys (
  function text NOT NULL,
  name text NOT NULL,
  hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (function, name)
);
`
