/** A BlobStore in an S3 bucket (AWS S3, or an S3-compatible server such as Ceph RGW). */
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, ListMultipartUploadsCommand,
  ListObjectsV2Command, PutObjectCommand, UploadPartCommand, type CompletedPart, type S3Client,
} from '@aws-sdk/client-s3';
import type { BlobStore } from './store.js';

/**
 * Bodies above this go as a multipart upload in parts of this size (S3's minimum). A stream is gathered into
 * two part buffers, allocated once per upload and reused: one is uploaded while the next fills, so a backup
 * holds 10 MiB beside the world whatever its size, and leaves no garbage behind for a GC to find.
 */
const PART_BYTES = 5 * 1024 * 1024;

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
    if (body instanceof Uint8Array) {
      const whole = body;
      await this.putParts(key, async (i) => whole.subarray(i * PART_BYTES, (i + 1) * PART_BYTES));
      return;
    }
    const chunks = (Symbol.asyncIterator in body ? body[Symbol.asyncIterator]() : body[Symbol.iterator]()) as AsyncIterator<Uint8Array> | Iterator<Uint8Array>;
    let rest: Uint8Array | undefined; // a chunk, or what it had beyond the part it filled
    let ended = false;
    const next = async (): Promise<boolean> => {
      const got = await chunks.next();
      if (got.done) ended = true;
      else rest = got.value;
      return !got.done;
    };
    try {
      // Up to one part: the chunks as they come. A stream that ends within it is one PutObject of them.
      const head: Uint8Array[] = [];
      let headBytes = 0;
      while (headBytes <= PART_BYTES && (await next())) {
        head.push(rest!);
        headBytes += rest!.byteLength;
      }
      rest = undefined;
      if (ended) {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: head.length === 1 ? head[0] : Buffer.concat(head) }));
        return;
      }
      const buffers: Uint8Array[] = [];
      const pending = head; // the head's chunks, spread over the first parts
      // Fills part buffer `i % 2` (free again: the part before it is stored); short only at the stream's end.
      const gather = async (i: number): Promise<Uint8Array> => {
        const part = (buffers[i % 2] ??= new Uint8Array(PART_BYTES));
        let at = 0;
        while (at < PART_BYTES) {
          if (!rest || rest.byteLength === 0) {
            if (pending.length > 0) rest = pending.shift();
            else if (ended || !(await next())) break;
          }
          const n = Math.min(rest!.byteLength, PART_BYTES - at);
          part.set(rest!.subarray(0, n), at);
          at += n;
          rest = rest!.subarray(n);
        }
        return part.subarray(0, at);
      };
      await this.putParts(key, gather);
    } finally {
      if (!ended) await chunks.return?.();
    }
  }

  /**
   * Uploads the parts `part(0)`, `part(1)`, ... (each PART_BYTES but the last, which is shorter or empty) as a
   * multipart upload, one part in flight while the next is produced; a failure aborts it, leaving no part behind.
   */
  private async putParts(key: string, part: (i: number) => Promise<Uint8Array>): Promise<void> {
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }));
    const parts: CompletedPart[] = [];
    let inFlight: Promise<unknown> = Promise.resolve();
    try {
      for (let i = 0; ; i++) {
        const body = await part(i);
        await inFlight; // the previous part is stored, and its buffer free for part i + 1
        if (body.byteLength === 0 && i > 0) break;
        const upload = this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId, PartNumber: i + 1, Body: body }))
          .then((out) => { parts[i] = { PartNumber: i + 1, ETag: out.ETag }; });
        inFlight = upload;
        upload.catch(() => undefined); // awaited above or below; a failure is not unhandled meanwhile
        if (body.byteLength < PART_BYTES) break;
      }
      await inFlight;
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      await inFlight.catch(() => undefined);
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId })).catch(() => undefined);
      throw err;
    }
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
