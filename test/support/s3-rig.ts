/** A prefix on the shared S3 test server seen two ways: directly, and through a fault-injecting proxy. */
import { S3Client } from '@aws-sdk/client-s3';
import type { TestContext } from 'node:test';
import { S3Store } from '../../lib/store-s3.js';
import { openS3Store, type StoreFixture } from './app.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import type { S3TestServer } from './s3-server.js';

/**
 * testS3Client's settings, aimed at `endpoint`, with two attempts and short timeouts so faults surface quickly.
 * `throwOnRequestTimeout`: in @smithy/node-http-handler 4.x a requestTimeout on its own only logs a warning,
 * and a stalled request waits forever.
 */
export function proxiedClient(server: S3TestServer, endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    maxAttempts: 2,
    requestHandler: { connectionTimeout: 1000, requestTimeout: 3000, throwOnRequestTimeout: true },
  });
}

export interface Rig {
  /** The bucket as it is, bypassing the proxy. */
  direct: StoreFixture & { client: S3Client; bucket: string; server: S3TestServer };
  /** The same prefix, through the proxy. */
  proxied: StoreFixture;
  proxy: FaultProxy;
}

/** A fresh prefix, a proxy in front of the S3 server, and a store on each side; all closed after the test. */
export async function rig(t: TestContext, makeClient = proxiedClient): Promise<Rig> {
  const direct = await openS3Store();
  const proxy = await startFaultProxy(direct.server.endpoint);
  t.after(() => proxy.close());
  const client = makeClient(direct.server, proxy.endpoint);
  t.after(() => client.destroy());
  return { direct, proxied: { ...direct, store: new S3Store(client, direct.bucket) }, proxy };
}
