import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Type from 'typebox';
import Value from 'typebox/value';
import YAML from 'yaml';
import { ConfigError } from './errors.ts';
import { keyFingerprint } from './keys/keyring.ts';

// Loaded and validated once at start-up, then frozen and passed in. Nothing else reads the
// environment: entry points call loadConfig() and hand the result to buildContainer().

const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const Url = Type.String({ pattern: '^[a-z][a-z0-9+.-]*://' });

export const FsStorageSchema = Type.Object(
  {
    driver: Type.Literal('fs'),
    root: Type.String({ minLength: 1 }),
    /** A plain folder name; no leading "." (so never ".", "..", the ".meta" sidecar tree or a temp name). */
    container: Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]*$',
      default: 'database_backups',
    }),
  },
  { additionalProperties: false },
);
export const SwiftStorageSchema = Type.Object(
  {
    driver: Type.Literal('swift'),
    /** TempAuth: http://127.0.0.1:8081/auth/v1.0; Keystone: http://host:5000/v3 */
    authUrl: Url,
    authVersion: Type.Union([Type.Literal('1'), Type.Literal('3')], { default: '1' }),
    user: Type.Optional(Type.String()),
    key: Type.Optional(Type.String()),
    projectName: Type.Optional(Type.String()),
    projectDomain: Type.Optional(Type.String()),
    userDomain: Type.Optional(Type.String()),
    applicationCredentialId: Type.Optional(Type.String()),
    applicationCredentialSecret: Type.Optional(Type.String()),
    regionName: Type.Optional(Type.String()),
    interface: Type.Optional(Type.String()),
    /** Skip auth and use this storage URL (e.g. http://127.0.0.1:8081/v1/AUTH_test) with a fixed token. */
    storageUrl: Type.Optional(Url),
    container: Type.String({ minLength: 1, default: 'database_backups' }),
    segmentSize: Type.Integer({ minimum: 1, default: 64 * 1024 * 1024 }),
  },
  { additionalProperties: false },
);
export const S3StorageSchema = Type.Object(
  {
    driver: Type.Literal('s3'),
    endpoint: Url,
    region: Type.String({ default: 'us-east-1' }),
    bucket: Type.String({ minLength: 1 }),
    prefix: Type.String({ default: '' }),
    accessKeyId: Type.String({ minLength: 1 }),
    secretAccessKey: Type.String({ minLength: 1 }),
    forcePathStyle: Type.Boolean({ default: true }),
    partSize: Type.Integer({ minimum: 5 * 1024 * 1024, default: 64 * 1024 * 1024 }),
  },
  { additionalProperties: false },
);
export const StorageSchema = Type.Union([FsStorageSchema, SwiftStorageSchema, S3StorageSchema]);
export type FsStorageConfig = Type.Static<typeof FsStorageSchema>;
export type SwiftStorageConfig = Type.Static<typeof SwiftStorageSchema>;
export type S3StorageConfig = Type.Static<typeof S3StorageSchema>;
export type StorageConfig = Type.Static<typeof StorageSchema>;

const Role = Type.Union([Type.Literal('admin'), Type.Literal('member')]);
const TokenSchema = Type.Object(
  {
    token: Type.String({ minLength: 8 }),
    project: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }),
    roles: Type.Array(Role, { minItems: 1, default: ['member'] }),
    user: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const KeySchema = Type.Object(
  {
    /** Default: a fingerprint of the secret, so regions sharing a secret agree on its id. */
    id: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' })),
    /** Any high-entropy string (e.g. `openssl rand -base64 32`); the AES key is its SHA-256. */
    secret: Type.String({ minLength: 32 }),
  },
  { additionalProperties: false },
);

const CatalogEntrySchema = Type.Object(
  {
    region: Type.String({ minLength: 1 }),
    /** The region's Tern API, used by the {source: {region, id}} form of create. */
    apiUrl: Type.Optional(Url),
    storage: StorageSchema,
    /** That region's keys this region may unwrap backup passphrases with (to re-wrap copies). */
    keys: Type.Array(KeySchema, { default: [] }),
  },
  { additionalProperties: false },
);

const DatastoreSchema = Type.Object(
  {
    type: Type.Union([Type.Literal('mariadb'), Type.Literal('mysql'), Type.Literal('postgresql')]),
    versions: Type.Array(
      Type.Object({ name: Type.String({ minLength: 1 }), id: Type.Optional(Type.String()) }, { additionalProperties: false }),
      { minItems: 1 },
    ),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    region: Type.String({ minLength: 1, pattern: '^[A-Za-z0-9_-]+$', default: 'local' }),
    listen: Type.Object(
      { host: Type.String({ default: '127.0.0.1' }), port: Type.Intersect([Port], { default: 8779 }) },
      { additionalProperties: false, default: {} },
    ),
    /** How other regions and clients reach this API; links in list responses use it. */
    publicUrl: Type.Optional(Url),
    dataDir: Type.String({ default: './var' }),
    database: Type.Object(
      { url: Type.Optional(Type.String({ pattern: '^(sqlite:|postgres://|postgresql://)' })) },
      { additionalProperties: false, default: {} },
    ),
    storage: Type.Optional(StorageSchema),
    auth: Type.Object({ tokens: Type.Array(TokenSchema, { default: [] }) }, { additionalProperties: false, default: {} }),
    catalog: Type.Array(CatalogEntrySchema, { default: [] }),
    encryption: Type.Object(
      {
        /** Encrypt new backups (openssl-compatible AES-256-CBC, one random passphrase per backup). */
        enabled: Type.Boolean({ default: true }),
        /** This region's keys; the first wraps new secrets, the rest stay readable (rotation). */
        keys: Type.Array(KeySchema, { default: [] }),
        /** Trove's deployment-wide backup key, to restore backups Trove made. */
        legacyPassphrase: Type.Optional(Type.String({ minLength: 1 })),
      },
      { additionalProperties: false, default: {} },
    ),
    worker: Type.Object(
      {
        enabled: Type.Boolean({ default: true }),
        concurrency: Type.Integer({ minimum: 1, maximum: 64, default: 2 }),
        leaseSeconds: Type.Number({ exclusiveMinimum: 0, default: 30 }),
        heartbeatSeconds: Type.Number({ exclusiveMinimum: 0, default: 10 }),
        pollMs: Type.Integer({ minimum: 10, default: 500 }),
        maxAttempts: Type.Integer({ minimum: 1, default: 5 }),
        backoffBaseMs: Type.Integer({ minimum: 1, default: 1000 }),
        backoffMaxMs: Type.Integer({ minimum: 1, default: 60000 }),
      },
      { additionalProperties: false, default: {} },
    ),
    copy: Type.Object(
      {
        parallelism: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
        partSize: Type.Integer({ minimum: 1024, default: 64 * 1024 * 1024 }),
        segmentRetries: Type.Integer({ minimum: 0, default: 3 }),
        /** Copy jobs running at once across every worker of this region (as RDS caps concurrent snapshot copies). */
        maxRunning: Type.Integer({ minimum: 1, default: 8 }),
      },
      { additionalProperties: false, default: {} },
    ),
    quotas: Type.Object(
      {
        /** Backups a project may hold in this region (every status but deleted), as Trove's max_backups_per_tenant. */
        backupsPerProject: Type.Integer({ minimum: 1, default: 50 }),
      },
      { additionalProperties: false, default: {} },
    ),
    datastores: Type.Array(DatastoreSchema, {
      default: [
        { type: 'mariadb', versions: [{ name: '10.11' }] },
        { type: 'postgresql', versions: [{ name: '15' }] },
      ],
    }),
    limits: Type.Object(
      {
        maxBodyBytes: Type.Integer({ minimum: 1024, default: 1024 * 1024 }),
        maxPageSize: Type.Integer({ minimum: 1, default: 1000 }),
        defaultPageSize: Type.Integer({ minimum: 1, default: 20 }),
      },
      { additionalProperties: false, default: {} },
    ),
    logLevel: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info' },
    ),
  },
  { additionalProperties: false },
);

type RawConfig = Type.Static<typeof ConfigSchema>;

export interface DatastoreVersionConfig {
  id: string;
  name: string;
}
export interface DatastoreConfig {
  type: 'mariadb' | 'mysql' | 'postgresql';
  versions: DatastoreVersionConfig[];
}

export interface KeyConfig {
  id: string;
  secret: string;
}

export interface TernConfig
  extends Omit<RawConfig, 'storage' | 'database' | 'publicUrl' | 'datastores' | 'encryption' | 'catalog'> {
  publicUrl: string;
  catalog: Array<Omit<RawConfig['catalog'][number], 'keys'> & { keys: KeyConfig[] }>;
  encryption: { enabled: boolean; keys: KeyConfig[]; legacyPassphrase?: string };
  database: { url: string };
  storage: StorageConfig;
  datastores: DatastoreConfig[];
  /** Set when no token was configured and a development token was generated for this data dir. */
  generatedDevToken?: string;
}

export interface LoadOptions {
  /** Path of a YAML or JSON file; absent means defaults + environment only. */
  file?: string;
  /** Usually process.env, read once by the entry point. */
  env?: Record<string, string | undefined>;
  /** Folder relative paths are resolved against (default: the config file's folder, else cwd). */
  baseDir?: string;
}

// Environment overrides: one variable per commonly changed setting, as [variable, setting path, parse].
const ENV_OVERRIDES: Array<[string, string[], (v: string) => unknown]> = [
  ['TERN_REGION', ['region'], String],
  ['TERN_HOST', ['listen', 'host'], String],
  ['TERN_PORT', ['listen', 'port'], Number],
  ['TERN_PUBLIC_URL', ['publicUrl'], String],
  ['TERN_DATA_DIR', ['dataDir'], String],
  ['TERN_DATABASE_URL', ['database', 'url'], String],
  ['TERN_WORKER', ['worker', 'enabled'], (v) => !['0', 'false', 'off'].includes(v)],
  ['TERN_LOG_LEVEL', ['logLevel'], String],
];

function setPath(target: Record<string, any>, path: string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    if (typeof node[part] !== 'object' || node[part] === null) node[part] = {};
    node = node[part];
  }
  node[path[path.length - 1]] = value;
}

export function loadConfig(options: LoadOptions = {}): TernConfig {
  const env = options.env ?? {};
  let raw: Record<string, any> = {};
  const file = options.file ?? env.TERN_CONFIG;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
    try {
      raw = (YAML.parse(text) ?? {}) as Record<string, any>;
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid YAML/JSON: ${(err as Error).message}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config file ${file} must hold an object`);
  }
  for (const [name, path, parse] of ENV_OVERRIDES) {
    const value = env[name];
    if (value !== undefined && value !== '') setPath(raw, path, parse(value));
  }
  const baseDir = options.baseDir ?? (file ? dirname(resolve(file)) : process.cwd());
  return finish(validate(raw), baseDir);
}

function validate(raw: Record<string, any>): RawConfig {
  const withDefaults = Value.Default(ConfigSchema, structuredClone(raw)) as unknown;
  if (Value.Check(ConfigSchema, withDefaults)) return withDefaults as RawConfig;
  const problems = [...Value.Errors(ConfigSchema, withDefaults)]
    .filter((e) => e.keyword !== 'boolean' && e.keyword !== 'anyOf')
    .map((e) => `  - ${e.instancePath || '(top level)'}: ${describe(e)}`);
  const unique = [...new Set(problems)];
  throw new ConfigError(`invalid configuration:\n${unique.join('\n') || '  - does not match the schema'}`);
}

function describe(e: { keyword: string; message: string; params: Record<string, any> }): string {
  if (e.keyword === 'additionalProperties') return `unknown setting(s) ${e.params.additionalProperties.join(', ')}`;
  if (e.keyword === 'required') return `missing setting(s) ${e.params.requiredProperties.join(', ')}`;
  return e.message;
}

/** A UUID-shaped id derived from names, the same in every region so copies agree on datastore ids. */
export function stableId(...parts: string[]): string {
  const h = createHash('sha1')
    .update(`tern:${parts.join(':')}`)
    .digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function finish(raw: RawConfig, baseDir: string): TernConfig {
  const dataDir = resolve(baseDir, raw.dataDir);
  const abs = (p: string) => resolve(baseDir, p);
  const fixStorage = (s: StorageConfig): StorageConfig => (s.driver === 'fs' ? { ...s, root: abs(s.root) } : s);
  const storage = fixStorage(raw.storage ?? { driver: 'fs', root: `${dataDir}/objects`, container: 'database_backups' });
  const dbUrl = raw.database.url ?? `sqlite:${dataDir}/tern.db`;
  const database = { url: dbUrl.startsWith('sqlite:') && dbUrl !== 'sqlite::memory:' ? `sqlite:${abs(dbUrl.slice(7))}` : dbUrl };
  const regions = new Set<string>([raw.region]);
  for (const entry of raw.catalog) {
    if (regions.has(entry.region))
      throw new ConfigError(`invalid configuration:\n  - /catalog: region ${entry.region} is listed twice (or is this region)`);
    regions.add(entry.region);
  }
  const datastores: DatastoreConfig[] = raw.datastores.map((d) => ({
    type: d.type,
    versions: d.versions.map((v) => ({ name: v.name, id: v.id ?? stableId('datastore-version', d.type, v.name) })),
  }));
  let tokens = raw.auth.tokens;
  let generatedDevToken: string | undefined;
  if (tokens.length === 0) {
    generatedDevToken = devToken(dataDir);
    tokens = [{ token: generatedDevToken, project: 'dev', roles: ['admin', 'member'] }];
  }
  const config: TernConfig = {
    ...raw,
    dataDir,
    publicUrl: (raw.publicUrl ?? `http://${hostForUrl(raw.listen.host)}:${raw.listen.port}`).replace(/\/+$/, ''),
    database,
    storage,
    catalog: raw.catalog.map((c) => ({ ...c, storage: fixStorage(c.storage), keys: c.keys.map(withKeyId) })),
    encryption: {
      ...raw.encryption,
      keys: raw.encryption.keys.length > 0 ? raw.encryption.keys.map(withKeyId) : [withKeyId({ secret: devKey(dataDir) })],
    },
    datastores,
    auth: { tokens },
    generatedDevToken,
  };
  return deepFreeze(config);
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

// The development token lives in the data dir so restarts keep it; it is printed only when made.
function devToken(dataDir: string): string {
  const path = `${dataDir}/dev-token`;
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  mkdirSync(dataDir, { recursive: true });
  const token = randomBytes(24).toString('hex');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  return token;
}

function withKeyId(k: { id?: string; secret: string }): KeyConfig {
  return { id: k.id ?? keyFingerprint(k.secret), secret: k.secret };
}

// Like the dev token: a region with no configured key gets one in its data dir, kept across
// restarts (losing it would make every encrypted backup of this region unreadable).
function devKey(dataDir: string): string {
  const path = `${dataDir}/master-key`;
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('base64');
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return secret;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
