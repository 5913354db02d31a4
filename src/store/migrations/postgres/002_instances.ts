/** Migration 2: the cluster registry of gateway instances (src/cluster), one row per instance id. */
export default `
CREATE TABLE instances (
  id text PRIMARY KEY,
  incarnation text NOT NULL,
  doc text NOT NULL,
  heartbeat_at timestamptz NOT NULL
);
`
