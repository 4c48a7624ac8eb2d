/** Entry point: configuration from the environment, the store, the app; signals; the only process.exit. */
import { randomBytes } from 'node:crypto';
import { createApp } from './lib/app.js';
import { ConfigError, loadConfig, type Config } from './lib/config.js';
import { createLog } from './lib/log.js';
import type { BlobStore } from './lib/store.js';
import { FileStore } from './lib/store-file.js';
import { createS3Client } from './lib/s3-client.js';
import { S3Store } from './lib/store-s3.js';

const log = createLog();

function openStore(config: Config): BlobStore {
  if (config.store.kind === 'file') return new FileStore(config.store.dir);
  return new S3Store(createS3Client({ forcePathStyle: config.store.forcePathStyle }), config.store.bucket);
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env, () => randomBytes(18).toString('base64url'));
  } catch (err) {
    if (err instanceof ConfigError) {
      log.error('config_invalid', { variable: err.variable, message: err.message });
      process.exit(2);
    }
    throw err;
  }
  if (config.auth.generated) {
    // Shown once so a local `npm start` is usable; production sets AUTH_PASSWORD and this never appears.
    log.warn('auth_password_generated', { user: config.auth.user, password: config.auth.password, message: 'AUTH_PASSWORD is not set: this random password is valid until the server stops' });
  }
  const app = createApp({
    cells: config.cells,
    shape: config.shape,
    auth: config.auth,
    store: openStore(config),
    prefix: config.prefix,
    legacyKey: config.legacyKey,
    backupRetain: config.backupRetain,
    backupIntervalMs: config.backupIntervalSeconds * 1000,
    shipIntervalMs: config.shipIntervalSeconds * 1000,
    putBudget: config.shipPutBudget,
    wal: config.wal,
    trustedProxies: config.trustedProxies,
    maxConnections: config.maxConnections,
    logRequests: config.logRequests,
    maxLoginFailures: config.authFailureLimit,
    advertiseUrl: config.advertiseUrl,
    replication: config.replication,
    // Present when node runs with --expose-gc (the Procfile and npm start do).
    collectGarbage: typeof globalThis.gc === 'function' ? collectGarbage(globalThis.gc) : undefined,
    log,
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('signal', { signal });
    app.close().then(
      (final) => process.exit(final.outcome === 'failed' ? 1 : 0),
      (err: unknown) => {
        log.error('shutdown_failed', { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  try {
    await app.start(config.port, config.host);
  } catch (err) {
    const code = (err as { code?: string }).code;
    const message = code === 'EADDRINUSE' ? `port ${config.port} on ${config.host} is already in use` : (err as Error).message;
    log.error('start_failed', { message, err });
    process.exit(1);
  }
}

/**
 * A full GC now, and once no other has been asked for in RELEASE_AFTER_MS a last-resort one: that also gives
 * back the heap pages a plain full GC keeps (after backups under load the idle process stayed 16-62 MiB above
 * its idle after boot, bench/memory.ts), but it stalls the loop several times longer (bench/backup.ts), so back-to-back backups
 * pay it once, after the last.
 */
function collectGarbage(gc: NodeJS.GCFunction): () => void {
  const RELEASE_AFTER_MS = 1000;
  let release: NodeJS.Timeout | undefined;
  return () => {
    gc();
    clearTimeout(release);
    release = setTimeout(() => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' }), RELEASE_AFTER_MS).unref();
  };
}

main().catch((err: unknown) => {
  log.error('crashed', { err });
  process.exit(1);
});
