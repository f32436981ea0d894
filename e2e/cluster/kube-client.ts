/**
 * A minimal Kubernetes REST client over node:https with x509 client-certificate authentication:
 * JSON in, JSON out, the three patch types, and errors that carry the HTTP status and the
 * apiserver's Status message. Enough for a test harness; no watches.
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';

export type PatchType = 'merge' | 'strategic' | 'json';

const PATCH_CONTENT_TYPE: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
};

export class KubeError extends Error {
  readonly status: number;
  readonly body: string;
  constructor(method: string, path: string, status: number, body: string) {
    let message = body;
    try {
      const parsed = JSON.parse(body) as { message?: unknown };
      if (typeof parsed.message === 'string') message = parsed.message;
    } catch {
      // not JSON
    }
    super(`${method} ${path}: HTTP ${String(status)}: ${message.slice(0, 500)}`);
    this.status = status;
    this.body = body;
  }
}

export interface KubeCredentials {
  /** https://HOST:PORT */
  readonly server: string;
  /** PEM file paths. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface RequestOptions {
  readonly body?: unknown;
  readonly contentType?: string;
  readonly timeoutMs?: number;
}

export class KubeClient {
  readonly server: string;
  readonly #agent: Agent;

  constructor(credentials: KubeCredentials) {
    this.server = credentials.server.replace(/\/$/, '');
    this.#agent = new Agent({
      ca: readFileSync(credentials.ca),
      cert: readFileSync(credentials.cert),
      key: readFileSync(credentials.key),
      keepAlive: true,
      maxSockets: 8,
    });
  }

  /** Raw request: resolves with status and body text, never throws on HTTP errors. */
  raw(method: string, path: string, options: RequestOptions = {}): Promise<{ status: number; body: string }> {
    const payload = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    const url = new URL(path, this.server);
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent: this.#agent,
          headers: {
            accept: 'application/json',
            ...(payload === undefined ? {} : { 'content-type': options.contentType ?? 'application/json', 'content-length': Buffer.byteLength(payload) }),
          },
          timeout: options.timeoutMs ?? 15_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${url.href}: timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const { status, body } = await this.raw(method, path, options);
    if (status < 200 || status >= 300) throw new KubeError(method, path, status, body);
    return (body === '' ? undefined : JSON.parse(body)) as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  create<T>(path: string, object: unknown): Promise<T> {
    return this.request<T>('POST', path, { body: object });
  }

  replace<T>(path: string, object: unknown): Promise<T> {
    return this.request<T>('PUT', path, { body: object });
  }

  patch<T>(path: string, patch: unknown, type: PatchType = 'merge'): Promise<T> {
    return this.request<T>('PATCH', path, { body: patch, contentType: PATCH_CONTENT_TYPE[type] });
  }

  /** DELETE; a 404 is not an error (resolves false). */
  async delete(path: string, query: Readonly<Record<string, string>> = {}): Promise<boolean> {
    const qs = new URLSearchParams(query).toString();
    const full = qs === '' ? path : `${path}?${qs}`;
    const { status, body } = await this.raw('DELETE', full);
    if (status === 404) return false;
    if (status < 200 || status >= 300) throw new KubeError('DELETE', full, status, body);
    return true;
  }

  /** Closes the keep-alive sockets. */
  close(): void {
    this.#agent.destroy();
  }
}

// ---- The few object shapes the harness reads (only the fields it uses). ----

export interface ObjectMeta {
  readonly name: string;
  readonly namespace?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly resourceVersion?: string;
  readonly deletionTimestamp?: string;
}

export interface EndpointSliceList {
  readonly items: readonly {
    readonly metadata: ObjectMeta;
    readonly endpoints?: readonly {
      readonly addresses: readonly string[];
      readonly conditions?: { readonly ready?: boolean; readonly serving?: boolean; readonly terminating?: boolean };
      readonly nodeName?: string;
      readonly zone?: string;
      readonly targetRef?: { readonly name?: string };
    }[];
    readonly ports?: readonly { readonly name?: string; readonly port?: number; readonly protocol?: string }[];
  }[];
}

export interface ServiceObject {
  readonly metadata: ObjectMeta;
  readonly spec: {
    readonly clusterIP?: string;
    readonly type?: string;
    readonly ports?: readonly { readonly name?: string; readonly port: number; readonly nodePort?: number; readonly protocol?: string }[];
  };
}
