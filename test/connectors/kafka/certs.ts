/**
 * A throw-away certificate authority for the Kafka security tests, made with openssl: the CA,
 * the broker's certificate (for 127.0.0.1 and localhost) in a PKCS12 keystore, and a client
 * certificate whose key is encrypted with a passphrase (mutual TLS).
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestCerts {
  dir: string
  caPem: string
  /** CA file path, PEM (the broker's truststore). */
  caFile: string
  keystore: string
  keystorePassword: string
  clientCert: string
  clientKey: string
  clientKeyPassphrase: string
  cleanup(): void
}

export function makeCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-kafka-certs-'))
  const f = (name: string) => join(dir, name)
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  const keystorePassword = 'keystore-secret'
  const clientKeyPassphrase = 'client-key-secret'
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=sluice test CA')
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost')
  ssl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.pem'),
    '-days',
    '2',
    '-extfile',
    f('server.ext'),
  )
  ssl(
    'pkcs12',
    '-export',
    '-in',
    f('server.pem'),
    '-inkey',
    f('server.key'),
    '-certfile',
    f('ca.pem'),
    '-name',
    'kafka',
    '-out',
    f('server.p12'),
    '-passout',
    `pass:${keystorePassword}`,
  )
  ssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-aes256', '-pass', `pass:${clientKeyPassphrase}`, '-out', f('client.key'))
  ssl('req', '-new', '-key', f('client.key'), '-passin', `pass:${clientKeyPassphrase}`, '-out', f('client.csr'), '-subj', '/CN=sluice-gateway')
  ssl('x509', '-req', '-in', f('client.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('client.pem'), '-days', '2')
  return {
    dir,
    caPem: readFileSync(f('ca.pem'), 'utf8'),
    caFile: f('ca.pem'),
    keystore: f('server.p12'),
    keystorePassword,
    clientCert: readFileSync(f('client.pem'), 'utf8'),
    clientKey: readFileSync(f('client.key'), 'utf8'),
    clientKeyPassphrase,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  }
}
