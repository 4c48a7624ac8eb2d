/**
 * The shipped deploy files (.ebextensions, .platform, the IAM policy, package.json, the README) read as the
 * platforms read them, each setting that a first deploy on real AWS depends on pinned against the code that
 * relies on it: what the tests' Ceph and the local deploy play cannot see.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { S3Client } from '@aws-sdk/client-s3';
import { describe, test, type TestContext } from 'node:test';
import { createApp } from '../lib/app.js';
import { ConfigError, loadConfig } from '../lib/config.js';
import { silentLog } from './support/log.js';
import type { BlobStore } from '../lib/store.js';
import { S3Store } from '../lib/store-s3.js';
import { AUTH, openFileStore, startServer, TEST_CELLS } from './support/app.js';
import { assertBootRefusal } from './support/app.js';
import { optionSettings, resources } from './support/ebextensions.js';

const EB = optionSettings('.ebextensions/cubecache.config');
const SHIPPED_ENV = EB['aws:elasticbeanstalk:application:environment']!;
const README = readFileSync('README.md', 'utf8');

describe('.ebextensions', () => {
  test('production runs node as npm start does: the same flags in the Procfile, the same malloc setting in the environment', () => {
    const start = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } }).scripts.start;
    const [, env, flags] = /^((?:\w+=\S+ )*)node (.*) dist\/server\.js$/.exec(start) ?? [];
    assert.ok(flags, `npm start is "VAR=value node <flags> dist/server.js": ${start}`);
    assert.match(flags, /--expose-gc/);
    assert.match(flags, /--max-semi-space-size=\d+/, 'a young generation that grows to 64 MiB under load and stays (bench/memory.ts)');
    assert.match(readFileSync('Procfile', 'utf8'), new RegExp(`^web: node ${flags.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} dist/server\\.js$`, 'm'));
    for (const pair of env!.trim().split(/\s+/).filter(Boolean)) {
      const [name, value] = pair.split('=');
      assert.equal(SHIPPED_ENV[name!], value, `.ebextensions sets ${name} as npm start does`);
    }
  });

  test('leaves the load balancer on its default instance port (nginx, 80); the app listens on PORT 5000 behind nginx', () => {
    const process = EB['aws:elasticbeanstalk:environment:process:default']!;
    assert.equal(process.Port, undefined, 'process:default Port is the port the load balancer sends to: 5000 would skip nginx');
    assert.equal(process.HealthCheckPath, '/healthcheck');
    assert.equal(EB['aws:elasticbeanstalk:application']!['Application Healthcheck URL'], '/healthcheck');
    assert.equal(SHIPPED_ENV.PORT, '5000');
    assert.equal(loadConfig({ ...SHIPPED_ENV, S3_BUCKET: 'b' }, () => 'x').port, 5000);
    assert.match(readFileSync('.platform/nginx/conf.d/cubecache.conf', 'utf8'), /^client_max_body_size 80M;$/m, 'nginx, which the traffic passes, takes a whole-world import');
  });

  test('the write-ahead log lives outside /var/app, in the folder the platform hook makes for every deploy and configuration change', () => {
    const config = loadConfig({ ...SHIPPED_ENV, S3_BUCKET: 'b' }, () => 'x');
    assert.deepEqual(config.wal, { dir: '/var/lib/cubecache/wal', sync: 'write' });
    const hook = readFileSync('.platform/hooks/prebuild/01-cubecache-state.sh', 'utf8');
    assert.equal(readFileSync('.platform/confighooks/prebuild/01-cubecache-state.sh', 'utf8'), hook, 'configuration deployments run the same hook');
    assert.match(hook, /CUBECACHE_STATE_DIR:-\/var\/lib\/cubecache\}/);
    assert.ok(config.wal!.dir.startsWith('/var/lib/cubecache/'), 'inside the folder the hook makes');
    assert.match(hook, /chown -R webapp:webapp/, 'owned by the user the Node.js platform runs the app as');
  });

  test('the bundle carries no secret and no bucket, and refuses to start without a bucket (the app folder is replaced by every deploy)', () => {
    for (const name of ['S3_BUCKET', 'AUTH_PASSWORD', 'AUTH_PASSWORD_PREVIOUS', 'AUTH_USER', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) {
      assert.equal(SHIPPED_ENV[name], undefined, `${name} is set on the environment, not in the bundle`);
    }
    assert.equal(SHIPPED_ENV.REQUIRE_S3_BUCKET, 'true');
    assert.throws(() => loadConfig(SHIPPED_ENV, () => 'x'), (err: unknown) => err instanceof ConfigError && err.variable === 'S3_BUCKET' && /set S3_BUCKET/.test(err.message));
    assert.equal(loadConfig({ ...SHIPPED_ENV, S3_BUCKET: 'my-game-world' }, () => 'x').store.kind, 's3');
  });

  test('the shipped TRUST_PROXY lets no client forge its address, on a single instance or behind a load balancer', async (t) => {
    const trustedProxies = loadConfig({ ...SHIPPED_ENV, S3_BUCKET: 'b' }, () => 'x').trustedProxies;
    // What reaches the app: the client's own X-Forwarded-For, then each proxy's entry for the peer it saw.
    const chains = {
      'single instance (client → nginx)': (client: string, forged: string) => `${forged}, ${client}`,
      'load balanced (client → load balancer → nginx)': (client: string, forged: string) => `${forged}, ${client}, 10.0.1.17`,
    };
    for (const [environment, chain] of Object.entries(chains)) {
      await throttleFollowsTheRealAddress(t, trustedProxies, chain, environment, environment.startsWith('single'));
    }
    // The README's value for an environment with a load balancer tells clients apart, still unforgeably.
    assert.ok(/`TRUST_PROXY=2`[^\n]*load balancer/.test(README), 'the README gives TRUST_PROXY=2 for a load balancer');
    await throttleFollowsTheRealAddress(t, 2, chains['load balanced (client → load balancer → nginx)'], 'load balanced with TRUST_PROXY=2', true);
  });
});

describe('.ebextensions: two instances, a leader and its standby', () => {
  const PROCESS = EB['aws:elasticbeanstalk:environment:process:default']!;
  /** Elastic Beanstalk's stop timeout, which the server's SIGTERM path fits (README, Durability). */
  const STOP_WINDOW_S = 30;
  const OWN_GROUP = { 'Fn::GetAtt': ['AWSEBSecurityGroup', 'GroupId'] };

  test('the instances reach each other on the port the app listens on: an ingress rule on their security group from that group itself, on that port alone', () => {
    const ingress = Object.values(resources('.ebextensions/cubecache.config')).filter((r) => r.Type === 'AWS::EC2::SecurityGroupIngress');
    assert.equal(ingress.length, 1, 'one ingress rule');
    const rule = ingress[0]!.Properties;
    assert.deepEqual(rule.GroupId, OWN_GROUP, 'added to the instances\' group (AWSEBSecurityGroup)');
    assert.deepEqual(rule.SourceSecurityGroupId, OWN_GROUP, 'from the instances\' group itself: the other instance, nobody else');
    for (const open of ['CidrIp', 'CidrIpv6', 'SourcePrefixListId', 'SourceSecurityGroupName']) assert.equal(rule[open], undefined, `no ${open}: the app port is not opened to anyone else`);
    assert.equal(rule.IpProtocol, 'tcp');
    // The port a standby dials: the leader's ADVERTISE_URL, whose default is this instance's address and the port it listens on.
    const port = String(loadConfig({ ...SHIPPED_ENV, S3_BUCKET: 'b' }, () => 'x').port);
    assert.equal(port, SHIPPED_ENV.PORT);
    assert.deepEqual([rule.FromPort, rule.ToPort], [port, port], 'the app\'s port, and only it');
  });

  test('exactly two instances: the Auto Scaling group neither shrinks to one nor grows past two', () => {
    assert.deepEqual(EB['aws:autoscaling:asg'], { MinSize: '2', MaxSize: '2' });
  });

  test('the load balancer checks /healthcheck often enough to drop a dead instance within 15 s, within the bounds an Application Load Balancer takes', () => {
    assert.equal(PROCESS.HealthCheckPath, '/healthcheck');
    const interval = Number(PROCESS.HealthCheckInterval);
    const timeout = Number(PROCESS.HealthCheckTimeout);
    const unhealthy = Number(PROCESS.UnhealthyThresholdCount);
    const healthy = Number(PROCESS.HealthyThresholdCount);
    assert.ok(interval >= 5 && interval <= 300, `HealthCheckInterval ${PROCESS.HealthCheckInterval}: 5 to 300 s`);
    assert.ok(timeout >= 1 && timeout < interval, `HealthCheckTimeout ${PROCESS.HealthCheckTimeout}: under the interval`);
    assert.ok(unhealthy >= 2 && unhealthy <= 10 && healthy >= 2 && healthy <= 10, 'thresholds of 2 to 10 checks');
    assert.ok(interval * unhealthy <= 15, `a dead instance keeps getting requests for ${interval * unhealthy} s`);
  });

  test('requests in flight on an instance leaving the load balancer get the app\'s stop window, no less and no more', () => {
    assert.equal(Number(PROCESS.DeregistrationDelay), STOP_WINDOW_S, `DeregistrationDelay ${PROCESS.DeregistrationDelay}`);
    assert.ok(new RegExp(`${STOP_WINDOW_S} s stop`).test(README), `the README gives Elastic Beanstalk's ${STOP_WINDOW_S} s stop window`);
  });
});

/**
 * Two failed logins from one client (each with a different forged X-Forwarded-For) lock that client out, a
 * third forged value does not get it back in; when `perClient`, another client is not locked out by it.
 */
async function throttleFollowsTheRealAddress(t: TestContext, trustedProxies: number, chain: (client: string, forged: string) => string, label: string, perClient: boolean) {
  const s = await startServer(t, await openFileStore(t), { maxLoginFailures: 2, trustedProxies });
  const as = (client: string, forged: string) => ({ 'X-Forwarded-For': chain(client, forged) });
  for (const forged of ['198.51.100.1', '198.51.100.2']) {
    assert.equal((await s.call('/request', { method: 'POST', body: {}, auth: { user: 'x', password: 'guess' }, headers: as('203.0.113.7', forged) })).status, 401, label);
  }
  assert.equal((await s.call('/request', { method: 'POST', body: {}, auth: AUTH, headers: as('203.0.113.7', '198.51.100.3') })).status, 429, `${label}: a new forged entry does not dodge the throttle`);
  if (perClient) {
    assert.equal((await s.call('/request', { method: 'POST', body: {}, auth: AUTH, headers: as('203.0.113.8', '203.0.113.7') })).status, 200, `${label}: another client is not locked out`);
  }
}

describe('iam/instance-role-policy.json', () => {
  interface Statement { Effect: string; Action: string | string[]; Resource: string | string[]; Condition?: unknown }
  const policy = JSON.parse(readFileSync('iam/instance-role-policy.json', 'utf8')) as { Statement: Statement[] };
  const list = (value: string | string[]) => (Array.isArray(value) ? value : [value]);
  const BUCKET = 'arn:aws:s3:::YOUR-BUCKET';
  /** True when a statement allows `action` on `resource` (IAM's * wildcard in resources). */
  const allows = (action: string, resource: string) => policy.Statement.some((s) => s.Effect === 'Allow' && s.Condition === undefined
    && list(s.Action).includes(action)
    && list(s.Resource).some((pattern) => new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.?+^$()[\]{}|\\]/g, '\\$&')).join('.*')}$`).test(resource)));

  test('grants s3:ListBucket on the bucket with no condition, so that a GetObject of a missing key is a 404 and not a 403', () => {
    assert.ok(allows('s3:ListBucket', BUCKET), JSON.stringify(policy));
  });

  test('allows every call the server makes with the shipped prefix and legacy key, from first boot to pruning, and nothing on other keys', async (t) => {
    const { store } = await openFileStore(t);
    const calls: Array<[string, string]> = [];
    const recording: BlobStore = {
      location: store.location,
      get: (key) => { calls.push(['s3:GetObject', `${BUCKET}/${key}`]); return store.get(key); },
      getStream: (key) => { calls.push(['s3:GetObject', `${BUCKET}/${key}`]); return store.getStream(key); },
      cleanup: (prefix, stale) => { calls.push(['s3:ListBucketMultipartUploads', BUCKET], ['s3:AbortMultipartUpload', `${BUCKET}/${prefix}x`]); return store.cleanup(prefix, stale); },
      put: (key, body) => { calls.push(['s3:PutObject', `${BUCKET}/${key}`], ['s3:AbortMultipartUpload', `${BUCKET}/${key}`]); return store.put(key, body); },
      putIfAbsent: (key, body) => { calls.push(['s3:PutObject', `${BUCKET}/${key}`]); return store.putIfAbsent(key, body); },
      getVersioned: (key) => { calls.push(['s3:GetObject', `${BUCKET}/${key}`]); return store.getVersioned(key); },
      putIfMatch: (key, body, version) => { calls.push(['s3:PutObject', `${BUCKET}/${key}`]); return store.putIfMatch(key, body, version); },
      list: (prefix) => { calls.push(['s3:ListBucket', BUCKET]); return store.list(prefix); },
      delete: (key) => { calls.push(['s3:DeleteObject', `${BUCKET}/${key}`]); return store.delete(key); },
    };
    const options = { cells: TEST_CELLS, auth: AUTH, store: recording, prefix: SHIPPED_ENV.S3_PREFIX!, legacyKey: SHIPPED_ENV.S3_LEGACY_KEY!, backupRetain: 2, backupIntervalMs: 0, log: silentLog };
    assert.equal(options.prefix, 'cubecache/');
    assert.equal(options.legacyKey, 'data.bin');
    await store.put('data.bin', new Uint8Array(TEST_CELLS * 4).fill(1)); // the Go server's world, read at first boot
    const first = createApp(options);
    t.after(() => first.close());
    assert.deepEqual((await first.start(0, '127.0.0.1')).restoredFrom, { kind: 'legacy', key: 'data.bin' });
    for (let i = 0; i < 4; i++) {
      await first.backups.writes.apply({ runs: [{ start: i, bytes: Uint8Array.of(i + 2, 0, 0, 0) }], by: '' });
      await first.backups.backup('test');
    }
    await first.close();
    const second = createApp(options); // a restart: restore, claim, list the kept backups
    t.after(() => second.close());
    await second.start(0, '127.0.0.1');
    await second.backups.list();
    await second.close();
    for (const action of ['s3:GetObject', 's3:PutObject', 's3:ListBucket', 's3:DeleteObject']) {
      assert.ok(calls.some(([a]) => a === action), `the run exercised ${action}`);
    }
    for (const [action, resource] of calls) assert.ok(allows(action, resource), `the policy allows ${action} on ${resource}`);
    assert.ok(!allows('s3:PutObject', `${BUCKET}/data.bin`) && !allows('s3:DeleteObject', `${BUCKET}/data.bin`), 'the legacy key is read-only');
    assert.ok(!allows('s3:GetObject', `${BUCKET}/other/key`), 'nothing outside the prefix and the legacy key');
  });

  test('a 403 on the legacy key at first boot: the boot refuses, saying that a missing key reads as 403 without s3:ListBucket', async (t) => {
    // An S3 endpoint that lists nothing and refuses every GetObject, as AWS does for a role without s3:ListBucket;
    // only the lease (which every start reads and writes first) is kept, so that the boot reaches the legacy key.
    let lease: Buffer | undefined;
    const s3 = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/world/cubecache/lease.json') {
        const etag = lease && `"${createHash('md5').update(lease).digest('hex')}"`;
        if (req.method === 'GET') {
          if (lease) res.writeHead(200, { ETag: etag, 'Content-Length': lease.byteLength }).end(lease);
          else res.writeHead(404, { 'Content-Type': 'application/xml' }).end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code></Error>');
          return;
        }
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          lease = Buffer.concat(chunks);
          res.writeHead(200, { ETag: `"${createHash('md5').update(lease).digest('hex')}"` }).end();
        });
        return;
      }
      if (req.method === 'GET' && url.searchParams.get('list-type') === '2') {
        res.writeHead(200, { 'Content-Type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>world</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>');
        return;
      }
      res.writeHead(403, { 'Content-Type': 'application/xml' });
      res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>');
    }).listen(0, '127.0.0.1');
    await once(s3, 'listening');
    t.after(() => new Promise((resolve) => s3.close(resolve)));
    const client = new S3Client({
      endpoint: `http://127.0.0.1:${(s3.address() as { port: number }).port}`, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' }, maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
    });
    t.after(() => client.destroy());
    const app = createApp({ cells: TEST_CELLS, auth: AUTH, store: new S3Store(client, 'world'), prefix: 'cubecache/', legacyKey: 'data.bin', backupRetain: 2, backupIntervalMs: 0, log: silentLog });
    t.after(() => app.close());
    await assertBootRefusal(app, app.start(0, '127.0.0.1'), /AccessDenied \(HTTP 403\): S3 refused to read s3:\/\/world\/data\.bin.*403 instead of 404 when the instance role lacks s3:ListBucket/);
    assert.ok(/403[^\n]*\n?[^\n]*legacy/i.test(README), 'the README says what a 403 on the legacy key means');
  });
});

describe('platform versions', () => {
  test('engines: Node 22 and newer, no upper bound; @types/node of the oldest supported major; the README recommends Node 24', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string }; devDependencies: Record<string, string> };
    assert.equal(pkg.engines.node, '>=22');
    assert.match(pkg.devDependencies['@types/node']!, /^22\./);
    assert.ok(/Node\.js 24 platform/.test(README), 'the README recommends the Node.js 24 platform');
    assert.ok(!/Node\.js 20(?!\d)(?! reached)/.test(README), 'Node 20 is not offered');
    const major = Number(process.versions.node.split('.')[0]);
    assert.ok(major >= 20, `running on ${process.version}`);
  });
});

describe('install scripts (npm 11 allowScripts)', () => {
  test('every dependency with an install script is reviewed in allowScripts, an approval pinned to the version the lockfile installs and named by its registry URL', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { allowScripts?: Record<string, boolean> };
    const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { version?: string; resolved?: string; hasInstallScript?: boolean }> };
    const policy = pkg.allowScripts ?? {};
    const entries = Object.entries(policy).map(([key, allowed]) => ({ key, allowed, name: key.replace(/@[^@]*$/, ''), version: /^.+@(\d+\.\d+\.\d+)$/.exec(key)?.[1] }));
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (!entry.hasInstallScript) continue;
      const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
      // Without a review, npm 11 warns on every fresh install ("not yet covered by allowScripts").
      assert.ok(entries.some((e) => e.name === name), `${name} runs an install script that allowScripts does not review`);
      for (const approval of entries.filter((e) => e.name === name && e.allowed)) {
        // A name-only approval would run the script of any later version unreviewed.
        assert.equal(approval.version, entry.version, `allowScripts approves ${approval.key}, the lockfile installs ${name}@${entry.version}`);
        // npm trusts a version only from the lockfile's resolved URL; this machine's npm config omits it by default.
        assert.equal(entry.resolved, `https://registry.npmjs.org/${name}/-/${name.split('/').pop()}-${entry.version}.tgz`, `the lockfile names ${name} by its registry URL, so npm can check the pin`);
      }
    }
    assert.ok(entries.length > 0, 'esbuild (tsx) runs an install script: allowScripts has at least its entry');
  });
});

describe('README: what a first deploy on real AWS needs', () => {
  const deploy = README.slice(README.indexOf('## Deploying to AWS Elastic Beanstalk'));
  test('each correction is there', () => {
    for (const [what, pattern] of [
      ['the instance profile is created in IAM first', /create the instance profile[^]*?IAM/i],
      ['the health check path set in the console too', /health check path[^]*?console/i],
      ['the load balancer idle timeout against a slow /s3dump', /idle timeout[^]*?60 s[^]*?s3dump/i],
      ['which updates run two instances, now safe', /safe: rolling and immutable deployments, managed platform updates[^]*?traffic splitting/i],
      ['what fencing still does', /fenc/i],
      ['the password in Secrets Manager or SSM Parameter Store', /Secrets Manager[^]*?Parameter Store/],
      ['TRUST_PROXY per environment type', /single[- ]instance[^\n]*`?TRUST_PROXY=1`?|`TRUST_PROXY=1`[^\n]*single[- ]instance/i],
      ['REQUIRE_S3_BUCKET', /REQUIRE_S3_BUCKET/],
      ['the Node 24 platform', /Node\.js 24/],
    ] as const) assert.ok(pattern.test(deploy), what);
  });

  test('two instances are the recommended setup: what the bundle sets up, how the two find each other, what the second one costs', () => {
    const section = deploy.slice(deploy.indexOf('### Two instances (recommended for production)'));
    assert.ok(section.length < deploy.length, 'a "Two instances (recommended for production)" section');
    for (const [what, pattern] of [
      ['the instance counts', /MinSize[^]*?MaxSize[^]*?2/],
      ['the security-group rule on the app port', /AWSEBSecurityGroup[^]*?port 5000/],
      ['the lease in the store', /lease\.json/],
      ['ADVERTISE_URL needs no setting on Elastic Beanstalk', /`ADVERTISE_URL` needs no setting on Elastic Beanstalk/],
      ['the deployment policy set in the console', /Rolling with a fixed batch size of 1, or Immutable/],
      ['the cost from list prices, not measured, with the type and region', /not measured[^]*?t3\.small in us-east-1[^]*?\$[\d.]+ a month/],
    ] as const) assert.ok(pattern.test(section), what);
    // The measured bounds go in this table; its rows are the events issue 18 names.
    const table = section.slice(section.indexOf('#### What each event costs'));
    assert.match(table, /\| event \| acknowledged writes lost \| writes wait or refused for \|/);
    for (const event of ['a crash (disk kept)', 'a crash with the disk lost', 'a paused leader', 'a cut link between the servers', 'a deploy (SIGTERM handover)', 'a standby that is down']) {
      assert.ok(table.includes(`| ${event} |`), `a row for ${event}`);
    }
  });

  test('the one-instance warnings are gone: no "do not scale out", no "All at once" for a load balancer, managed updates not turned off', () => {
    assert.ok(!/do not scale out/i.test(README));
    assert.ok(!/keep the "All at once" policy/i.test(README));
    assert.ok(!/turn managed\s+platform updates off/i.test(README));
    assert.ok(!/writes the older server takes after the claim are lost/i.test(README));
  });
});
