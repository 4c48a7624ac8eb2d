/** Configuration from the environment: parsed and validated once, in one place. */
import { cellsOf, DEFAULT_ORDER, isOrder, parseShape, type Shape } from './shape.js';

export interface Config {
  port: number;
  host: string;
  /**
   * Basic auth credentials; `generated` means the password was made at start and must be shown once.
   * `previousPassword` is accepted beside `password` while clients that cache it (PlayFab) catch up.
   */
  auth: { user: string; password: string; previousPassword?: string; generated: boolean };
  cells: number;
  /** The world's dimensions and index order (WORLD_SHAPE, WORLD_ORDER); undefined for a flat world (no boxes, no map). */
  shape: Shape | undefined;
  /** Where backups live: an S3 bucket, or a local folder when no bucket is configured. */
  store: { kind: 's3'; bucket: string; forcePathStyle: boolean } | { kind: 'file'; dir: string };
  /** Key prefix of this world's backups inside the store ('' or ending in '/'). */
  prefix: string;
  /** The seed server's raw backup object, read once at boot when the prefix holds no backup. */
  legacyKey: string;
  backupRetain: number;
  /** Seconds between scheduled snapshots; 0 turns the schedule off. */
  backupIntervalSeconds: number;
  /** Seconds between shipments of changes to the store; 0 turns shipping off. */
  shipIntervalSeconds: number;
  /** PUTs a month shipping may spend (0: no bound). */
  shipPutBudget: number;
  /**
   * The write-ahead log's folder and mode; undefined when WAL_DIR is set empty (off). `syncMarks` is test-only
   * (CUBECACHE_TEST_SYNC_MARKS): the log records what each fdatasync covered, for power-loss tests.
   */
  wal: { dir: string; sync: 'write' | 'strict'; syncMarks?: true } | undefined;
  /** Proxies in front of the server whose X-Forwarded-For entries name the client (0: none). */
  trustedProxies: number;
  maxConnections: number;
  logRequests: boolean;
  /** Failed logins from one address within a minute before it is refused for a minute; 0 turns throttling off. */
  authFailureLimit: number;
  /** Where the other server of a pair reaches this one (ADVERTISE_URL, an origin); undefined: derived once listening (lib/advertise.ts). */
  advertiseUrl: string | undefined;
  /** REPLICATION: a write waits for the standby (sync) or not (async); REPLICATION_TIMEOUT_MS: how far behind it may fall before the leader goes on alone. */
  replication: { mode: 'sync' | 'async'; timeoutMs: number };
}

/** A configuration variable that cannot be used; the message names it. */
export class ConfigError extends Error {
  constructor(readonly variable: string, reason: string) {
    super(`${variable}: ${reason}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Reads the configuration from `env`; throws ConfigError naming the first bad variable. `randomPassword` makes the password when AUTH_PASSWORD is unset. */
export function loadConfig(env: Env, randomPassword: () => string): Config {
  const bucket = optional(env, 'S3_BUCKET');
  // Elastic Beanstalk replaces the app folder on every deploy: a world kept there is lost, so its bundle sets this.
  const requireBucket = boolean(env, 'REQUIRE_S3_BUCKET', false);
  if (requireBucket && !bucket) {
    throw new ConfigError('S3_BUCKET', 'is required here (REQUIRE_S3_BUCKET=true): set S3_BUCKET to the bucket that keeps the world; without it the world would be kept in a local folder that the next deploy deletes');
  }
  const user = optional(env, 'AUTH_USER') ?? 'cubecache';
  // Basic auth splits user:password at the first colon, so a colon in the user could never log in.
  if (user.includes(':')) throw new ConfigError('AUTH_USER', 'must not contain ":" (Basic auth separates the user from the password with it)');
  const password = optional(env, 'AUTH_PASSWORD');
  const previousPassword = optional(env, 'AUTH_PASSWORD_PREVIOUS');
  if (previousPassword !== undefined && password === undefined) throw new ConfigError('AUTH_PASSWORD_PREVIOUS', 'is only used during a rotation: set AUTH_PASSWORD (the new password) too');
  const forcePathStyle = boolean(env, 'S3_FORCE_PATH_STYLE', false);
  const prefix = env.S3_PREFIX ?? 'cubecache/';
  if (prefix !== '' && !prefix.endsWith('/')) throw new ConfigError('S3_PREFIX', `must be empty or end with "/", got ${JSON.stringify(prefix)}`);
  if (prefix.startsWith('/')) throw new ConfigError('S3_PREFIX', 'must not start with "/"');
  // Both stores must list back exactly the keys they wrote: a folder store would normalize "./", "a//b/" or
  // "x/./y/" away, and the world would seem empty after a restart.
  if (prefix !== '' && prefix.slice(0, -1).split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new ConfigError('S3_PREFIX', `must be folder names separated by single "/", without "." or ".." (e.g. "cubecache/"), got ${JSON.stringify(prefix)}`);
  }
  const legacyKey = env.S3_LEGACY_KEY ?? 'data.bin';
  if (legacyKey.startsWith('/')) throw new ConfigError('S3_LEGACY_KEY', 'must not start with "/"');
  const dataDir = optional(env, 'DATA_DIR') ?? './data';
  const walDir = env.WAL_DIR === undefined ? `${dataDir.replace(/\/+$/, '')}/wal` : env.WAL_DIR.trim();
  const walSync = (optional(env, 'WAL_SYNC') ?? 'write').toLowerCase();
  if (walSync !== 'write' && walSync !== 'strict') throw new ConfigError('WAL_SYNC', `must be "write" or "strict", got ${JSON.stringify(env.WAL_SYNC)}`);
  const { cells, shape } = world(env);
  // Test-only: a power loss cannot be made for real in a test, so the log says what each fdatasync made durable.
  const syncMarks = boolean(env, 'CUBECACHE_TEST_SYNC_MARKS', false);
  const replication = (optional(env, 'REPLICATION') ?? 'sync').trim().toLowerCase();
  if (replication !== 'sync' && replication !== 'async') throw new ConfigError('REPLICATION', `must be "sync" or "async", got ${JSON.stringify(env.REPLICATION)}`);
  return {
    port: integer(env, 'PORT', 5000, 0, 65535),
    host: optional(env, 'HOST') ?? '0.0.0.0',
    auth: {
      user,
      password: password ?? randomPassword(),
      ...(previousPassword !== undefined && previousPassword !== password ? { previousPassword } : {}),
      generated: password === undefined,
    },
    cells,
    shape,
    store: bucket
      ? { kind: 's3', bucket, forcePathStyle }
      : { kind: 'file', dir: dataDir },
    prefix,
    legacyKey,
    backupRetain: integer(env, 'BACKUP_RETAIN', 24, 1, 10_000),
    // Fractions allowed, for tests and crash drills that want backups many times a second.
    // Snapshots compact the shipped changes; ten minutes keeps a boot's replay short (see README: measured).
    backupIntervalSeconds: decimal(env, 'BACKUP_INTERVAL_SECONDS', 600, 0, 7 * 24 * 3600),
    shipIntervalSeconds: decimal(env, 'SHIP_INTERVAL_SECONDS', 1, 0, 3600),
    shipPutBudget: integer(env, 'SHIP_PUT_BUDGET', 0, 0, 1e12),
    wal: walDir === '' ? undefined : { dir: walDir, sync: walSync, ...(syncMarks ? { syncMarks } : {}) },
    trustedProxies: trustProxy(env),
    maxConnections: integer(env, 'MAX_CONNECTIONS', 1024, 1, 1_000_000),
    logRequests: boolean(env, 'LOG_REQUESTS', false),
    authFailureLimit: integer(env, 'AUTH_FAILURE_LIMIT', 20, 0, 1_000_000),
    advertiseUrl: advertise(env),
    replication: { mode: replication, timeoutMs: integer(env, 'REPLICATION_TIMEOUT_MS', 1000, 50, 60_000) },
  };
}

/** The default world: 256 cells along each axis. */
const DEFAULT_CELLS = 16_777_216;
/** Up to 2^28 cells (1 GiB): a Uint8Array of that size is well within Node's limits. */
const MAX_CELLS = 2 ** 28;

/**
 * CUBE_CELLS, WORLD_SHAPE and WORLD_ORDER: WORLD_SHAPE alone sets the cells; both set must agree. Unset, the
 * default 16,777,216 cells are 256x256x256 and any other count is a flat world.
 */
function world(env: Env): { cells: number; shape: Shape | undefined } {
  const order = (optional(env, 'WORLD_ORDER') ?? DEFAULT_ORDER).trim().toLowerCase();
  if (!isOrder(order)) throw new ConfigError('WORLD_ORDER', `must name x, y and z once each, fastest first (e.g. "xzy"), got ${JSON.stringify(env.WORLD_ORDER)}`);
  const rawShape = optional(env, 'WORLD_SHAPE');
  if (rawShape === undefined) {
    const cells = integer(env, 'CUBE_CELLS', DEFAULT_CELLS, 1, MAX_CELLS);
    return { cells, shape: cells === DEFAULT_CELLS ? { x: 256, y: 256, z: 256, order } : undefined };
  }
  const shape = parseShape(rawShape, order);
  if (!shape) throw new ConfigError('WORLD_SHAPE', `must be three whole numbers from 1, x by y by z (y is up), e.g. "256x256x256", got ${JSON.stringify(rawShape)}`);
  const cells = cellsOf(shape);
  if (cells > MAX_CELLS) throw new ConfigError('WORLD_SHAPE', `holds ${cells} cells; at most ${MAX_CELLS}`);
  if (optional(env, 'CUBE_CELLS') !== undefined) {
    const declared = integer(env, 'CUBE_CELLS', DEFAULT_CELLS, 1, MAX_CELLS);
    if (declared !== cells) throw new ConfigError('WORLD_SHAPE', `${rawShape} holds ${cells} cells but CUBE_CELLS is ${declared}: set only WORLD_SHAPE, or make CUBE_CELLS its product`);
  }
  return { cells, shape };
}

/** ADVERTISE_URL as an origin (http(s)://host:port), or undefined when unset; anything more (a path, a query, credentials) is refused. */
function advertise(env: Env): string | undefined {
  const raw = optional(env, 'ADVERTISE_URL')?.trim();
  if (raw === undefined) return undefined;
  const example = 'e.g. "http://10.0.1.23:5000"';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('ADVERTISE_URL', `must be a URL where the other server reaches this one, ${example}, got ${JSON.stringify(raw)}`);
  }
  // The credentials are AUTH_USER and AUTH_PASSWORD: one in the URL would be sent nowhere, and logged.
  if (url.username !== '' || url.password !== '') throw new ConfigError('ADVERTISE_URL', 'must not hold credentials (the servers use AUTH_USER and AUTH_PASSWORD)');
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('ADVERTISE_URL', `must start with http:// or https://, ${example}, got ${JSON.stringify(raw)}`);
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') throw new ConfigError('ADVERTISE_URL', `must be only a scheme, a host and a port, ${example}, got ${JSON.stringify(raw)}`);
  return url.origin;
}

/** A set, non-empty value, or undefined. */
function optional(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got ${JSON.stringify(raw)}`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

/** TRUST_PROXY: a count of proxies, or true (one proxy) / false (none). */
function trustProxy(env: Env): number {
  const raw = optional(env, 'TRUST_PROXY')?.toLowerCase();
  if (raw === undefined || raw === 'false' || raw === 'no' || raw === 'off') return 0;
  if (raw === 'true' || raw === 'yes' || raw === 'on') return 1;
  return integer(env, 'TRUST_PROXY', 0, 0, 10);
}

function decimal(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+(\.\d+)?$/.test(raw.trim())) throw new ConfigError(name, `must be a number of seconds, got ${JSON.stringify(raw)}`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = optional(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false, got ${JSON.stringify(env[name])}`);
}
