/** A BlobStore in an S3 bucket (AWS S3, or an S3-compatible server such as Ceph RGW). */
import { AbortMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import type { BlobStore } from './store.js';

/**
 * Bodies above this go as a multipart upload in parts of this size (S3's minimum), two at a time: every part
 * in flight is memory held beside the world, and two keep a single stream to S3 busy.
 */
const PART_BYTES = 5 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;

/** Stores objects in `bucket` through `client` (built by the caller: the SDK's default chain in production, a local server in tests). */
export class S3Store implements BlobStore {
  readonly location: string;

  constructor(private readonly client: S3Client, private readonly bucket: string) {
    this.location = `s3://${bucket}`;
    skipPayloadHashing(client);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!out.Body) throw new Error(`GetObject ${key}: no body`);
      return await out.Body.transformToByteArray();
    } catch (err) {
      if (isMissing(err)) return undefined;
      if (statusOf(err) === 403) throw new AccessDeniedError(this.bucket, key, err);
      throw err;
    }
  }

  async getStream(key: string): Promise<AsyncIterable<Uint8Array> | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!out.Body) throw new Error(`GetObject ${key}: no body`);
      return out.Body as unknown as AsyncIterable<Uint8Array>; // a Node Readable in the Node SDK
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async put(key: string, body: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
    if (body instanceof Uint8Array && body.byteLength <= PART_BYTES) {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body }));
      return;
    }
    // lib-storage gathers a stream one part at a time (a single PutObject when it ends within one part), so
    // the whole body is never held; on failure it aborts the multipart upload (leavePartsOnError is false).
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: body instanceof Uint8Array ? body : Readable.from(body, { objectMode: false }) },
      partSize: PART_BYTES,
      queueSize: PARTS_IN_FLIGHT,
    });
    await upload.done();
  }

  async putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
    // Conditional writes are honoured on PutObject only (AWS and Ceph alike), so callers keep these bodies small.
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, IfNoneMatch: '*' }));
      return true;
    } catch (err) {
      // 412: the key exists. 409 ConditionalRequestConflict: AWS's answer when two conditional writes race; the other won.
      const name = (err as Error | null)?.name;
      if (statusOf(err) === 412 || name === 'PreconditionFailed' || statusOf(err) === 409 || name === 'ConditionalRequestConflict') return false;
      throw err;
    }
  }

  async getVersioned(key: string): Promise<{ body: Uint8Array; version: string } | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!out.Body || !out.ETag) throw new Error(`GetObject ${key}: no body or no ETag`);
      return { body: await out.Body.transformToByteArray(), version: out.ETag };
    } catch (err) {
      if (isMissing(err)) return undefined;
      if (statusOf(err) === 403) throw new AccessDeniedError(this.bucket, key, err);
      throw err;
    }
  }

  async putIfMatch(key: string, body: Uint8Array, version: string): Promise<boolean> {
    // AWS takes the ETag as it gave it, quoted (RFC 9110); Ceph RGW 16 matches only the bare value and answers
    // 412 to the quoted one. So: the quoted form until a 412 is followed by a success with the bare one, then
    // the bare form. A second try after a 412 is harmless: it too writes only if the object is at `version`.
    const bare = version.replace(/^"(.*)"$/, '$1');
    if (!this.bareIfMatch) {
      if (await this.putMatching(key, body, `"${bare}"`)) return true;
      if (!(await this.putMatching(key, body, bare))) return false;
      this.bareIfMatch = true;
      return true;
    }
    return this.putMatching(key, body, bare);
  }

  /** Whether this server matches If-Match only on a bare ETag (Ceph RGW), learnt on the first such success. */
  private bareIfMatch = false;

  /** PutObject with If-Match: `ifMatch`; false on 412 (changed, or missing on Ceph), 404 (missing on AWS) or 409 (a racing conditional write won). */
  private async putMatching(key: string, body: Uint8Array, ifMatch: string): Promise<boolean> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, IfMatch: ifMatch }));
      return true;
    } catch (err) {
      const name = (err as Error | null)?.name;
      const status = statusOf(err);
      if (status === 412 || name === 'PreconditionFailed' || status === 409 || name === 'ConditionalRequestConflict' || isMissing(err)) return false;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const object of out.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async cleanup(prefix: string, stale: (key: string) => boolean): Promise<number> {
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const out = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
      for (const upload of out.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !stale(upload.Key)) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId }));
        removed++;
      }
      keyMarker = out.IsTruncated ? out.NextKeyMarker : undefined;
      uploadIdMarker = out.IsTruncated ? out.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return removed;
  }
}

/**
 * A read S3 refused (403). Never taken for "missing": it may hide a real backup. Its message says the likely
 * cause on a first boot, since S3 answers 403 rather than 404 for a missing key to a caller without
 * s3:ListBucket on the bucket (iam/instance-role-policy.json grants it).
 */
export class AccessDeniedError extends Error {
  override name = 'AccessDenied';
  readonly $metadata: unknown;

  constructor(bucket: string, key: string, cause: unknown) {
    super(`S3 refused to read s3://${bucket}/${key} (${(cause as Error | null)?.name ?? 'error'}). If that key does not exist, S3 says 403 instead of 404 when the instance role lacks s3:ListBucket on the bucket: grant it as iam/instance-role-policy.json does (or, for the legacy key, set S3_LEGACY_KEY to nothing). Otherwise the role may not s3:GetObject this key`, { cause });
    this.$metadata = (cause as { $metadata?: unknown } | null)?.$metadata;
  }
}

const UNSIGNED = 'cubecacheUnsignedPayload';

/**
 * Signs request bodies as UNSIGNED-PAYLOAD instead of hashing each one: SigV4 otherwise hashes every 8 MiB
 * part on the event loop (tens of milliseconds each). Backups carry their own SHA-256, checked on restore,
 * and the transport to AWS is TLS. Added once per client.
 */
function skipPayloadHashing(client: S3Client): void {
  if (client.middlewareStack.identify().some((entry) => entry.startsWith(UNSIGNED))) return;
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers && !('x-amz-content-sha256' in request.headers)) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      return next(args);
    },
    { step: 'build', name: UNSIGNED },
  );
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

// Ceph and AWS carry no message text on these errors: match on the name or the status.
function isMissing(err: unknown): boolean {
  const name = (err as Error | null)?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(err) === 404;
}
