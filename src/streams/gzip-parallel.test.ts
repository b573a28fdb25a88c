import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, it } from 'node:test';
import { createGunzip } from 'node:zlib';
import { createParallelGzip } from './gzip-parallel.ts';

const dir = mkdtempSync(join(tmpdir(), 'tern-gzip-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** `size` bytes of half-compressible data (hex text), produced lazily in 64 KiB pieces. */
function source(size: number, seed = randomBytes(8).toString('hex')): { stream: Readable; sha256: Promise<string> } {
  const hash = createHash('sha256');
  let sent = 0;
  let n = 0;
  let resolve!: (v: string) => void;
  const sha256 = new Promise<string>((r) => {
    resolve = r;
  });
  const stream = new Readable({
    read() {
      if (sent >= size) {
        resolve(hash.digest('hex'));
        this.push(null);
        return;
      }
      const piece = Buffer.from(`${seed}${n++}${randomBytes(32 * 1024).toString('hex')}`).subarray(
        0,
        Math.min(65536, size - sent),
      );
      sent += piece.length;
      hash.update(piece);
      this.push(piece);
    },
  });
  return { stream, sha256 };
}

/** Decompresses a file with the system gzip and returns the sha256 and size of the output. */
async function systemGunzip(file: string): Promise<{ sha256: string; size: number }> {
  const child = spawn('gzip', ['-dc', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of child.stdout) {
    hash.update(chunk);
    size += chunk.length;
  }
  const code = await new Promise((r) => child.on('close', r));
  assert.equal(code, 0, 'gzip -d must accept the output');
  return { sha256: hash.digest('hex'), size };
}

describe('parallel gzip', () => {
  it('writes concatenated members that the system gzip decompresses to the exact input', async () => {
    const size = 5 * 1024 * 1024 + 12345; // not a multiple of the chunk size
    const src = source(size);
    const gz = createParallelGzip({ chunkSize: 256 * 1024, workers: 2, level: 6 });
    const file = join(dir, 'a.gz');
    await pipeline(src.stream, gz, createWriteStream(file));
    const out = await systemGunzip(file);
    assert.equal(out.size, size);
    assert.equal(out.sha256, await src.sha256);
  });

  it('keeps order with many tiny chunks on three workers (and Node gunzip reads it too)', async () => {
    const input = randomBytes(300 * 1024);
    const gz = createParallelGzip({ chunkSize: 1024, workers: 3, level: 1 });
    const file = join(dir, 'b.gz');
    await pipeline(Readable.from([input.subarray(0, 1000), input.subarray(1000)]), gz, createWriteStream(file));
    const out = await systemGunzip(file);
    assert.equal(out.sha256, createHash('sha256').update(input).digest('hex'));
    const chunks: Buffer[] = [];
    await pipeline(createReadStream(file), createGunzip(), async (s) => {
      for await (const c of s) chunks.push(c);
    });
    assert.deepEqual(Buffer.concat(chunks), input);
  });

  it('turns an empty input into a valid empty gzip file', async () => {
    const file = join(dir, 'empty.gz');
    await pipeline(Readable.from([]), createParallelGzip({ workers: 1 }), createWriteStream(file));
    const out = await systemGunzip(file);
    assert.equal(out.size, 0);
  });

  it('bounds memory: chunks in flight never exceed the limit and RSS does not grow with the input', async () => {
    const size = 256 * 1024 * 1024;
    const src = source(size);
    const gz = createParallelGzip({ chunkSize: 1024 * 1024, workers: 2, maxInFlight: 4, level: 1 });
    const gunzipped = createHash('sha256');
    let peakRss = 0;
    const baseline = process.memoryUsage().rss;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 20);
    // A slow consumer, so that an unbounded implementation would pile up input in memory.
    const slow = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _enc, cb) {
        gunzipped.update(chunk);
        setImmediate(cb);
      },
    });
    try {
      await pipeline(src.stream, gz, createGunzip(), slow);
    } finally {
      clearInterval(sampler);
    }
    assert.equal(gunzipped.digest('hex'), await src.sha256);
    assert.ok(gz.peakInFlight <= 4, `peak in flight ${gz.peakInFlight}`);
    assert.ok(gz.peakInFlight >= 2, 'chunks were compressed in parallel');
    const growthMiB = (peakRss - baseline) / 1024 / 1024;
    assert.ok(growthMiB < 128, `RSS grew by ${growthMiB.toFixed(0)} MiB for a 256 MiB input`);
  });

  it('rejects a bad level', () => {
    assert.throws(() => createParallelGzip({ level: 0 }), RangeError);
  });
});
