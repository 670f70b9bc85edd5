// One cluster member: the dedicated sync listener, links to the peers list (dialled with backoff,
// one link kept per peer), failure detection from heartbeats, anti-entropy (digest on connect and
// every anti_entropy_ms, then only the registers that differ), delta streaming, and change events
// for the runtime. Nothing here waits on a peer: writes apply locally and are sent best effort.

import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import {
  type ConnectionOptions,
  createServer,
  type Server,
  type TLSSocket,
  connect as tlsConnect,
} from 'node:tls';
import pino from 'pino';
import { ClusterError } from '../errors.ts';
import { parseEndpoint } from '../net/index.ts';
import { type Logger, LogRateLimiter } from '../observe/log.ts';
import type { QuarantineEntry } from '../policy/index.ts';
import {
  type ClusterAuth,
  clientTlsOptions,
  provenServerId,
  readClusterKey,
  readClusterTls,
  type ServerAuth,
  serverAuth,
} from './auth.ts';
import { HEADER_BYTES, MSG, NODE_ID_PATTERN, PROTOCOL_VERSION } from './frame.ts';
import { HybridClock } from './hlc.ts';
import {
  type BackendState,
  fromWire,
  HEALTH,
  KEYSPACES,
  type KeyspaceName,
  type KeyspaceRules,
  MEMBERS,
  type MemberInfo,
  POLICY,
  QUARANTINE,
  type QuarantineValue,
  STICKY,
  splitHealthKey,
  toWire,
} from './keyspaces.ts';
import {
  differingBuckets,
  isVisible,
  LwwMap,
  makeRegister,
  type Register,
  sparseBuckets,
} from './lww-map.ts';
import { type LinkCloseReason, type LinkSettings, PeerLink } from './peer-link.ts';
import {
  type BucketsMsg,
  type EntriesMsg,
  encodeBody,
  entryPayloads,
  type HelloMsg,
  type Message,
  type RootsMsg,
} from './protocol.ts';
import { EpochGuard } from './replay-guard.ts';
import {
  type HealthReport,
  HealthState,
  type KeyspaceStore,
  type PolicyOp,
  PolicyView,
  QuarantineView,
  quarantineEntryOf,
  type StickyEntry,
  StickyTable,
} from './state-views.ts';

/** The logger methods the cluster uses (a pino logger fits). */
export type ClusterLog = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** Settings of a node. Times in ms; every one has a default (CLUSTER_DEFAULTS). */
export interface ClusterNodeOptions {
  /** This node's id: letters, digits, `_.:-`, at most 64; unique in the cluster. */
  readonly nodeId: string;
  /** HOST:PORT of the sync listener (port 0: an ephemeral port, for tests). */
  readonly listen: string;
  /** HOST:PORT of the other nodes' listeners (this node's own address may be listed: it is skipped). */
  readonly peers?: readonly string[];
  /** Authentication, exactly one of: a key file (hex, `openssl rand -hex 32`) ... */
  readonly keyFile?: string;
  /** ... the key itself (at least 32 bytes) ... */
  readonly key?: Buffer;
  /** ... or mutual TLS: this node's certificate (CN = nodeId) and key, and the cluster CA. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
  readonly heartbeatMs?: number;
  readonly suspectMs?: number;
  readonly deadMs?: number;
  readonly antiEntropyMs?: number;
  readonly maxFrameBytes?: number;
  readonly maxQueueBytes?: number;
  readonly maxEntries?: number;
  readonly tombstoneMs?: number;
  readonly maxClockSkewMs?: number;
  readonly maxConnections?: number;
  /** The policy version (hash) this node runs at start. */
  readonly policyVersion?: string | null;
  readonly log?: ClusterLog;
  /** Wall clock, ms (tests). */
  readonly now?: () => number;
}

/** Defaults of the numeric settings (the same as schema/seglb.schema.json's `cluster` keys). */
export const CLUSTER_DEFAULTS = Object.freeze({
  heartbeatMs: 500,
  suspectMs: 1500,
  deadMs: 5000,
  antiEntropyMs: 2000,
  maxFrameBytes: 1_048_576,
  maxQueueBytes: 67_108_864,
  maxEntries: 1_000_000,
  tombstoneMs: 86_400_000,
  maxClockSkewMs: 60_000,
  maxConnections: 256,
});

type Settings = { readonly [K in keyof typeof CLUSTER_DEFAULTS]: number };

/** Liveness of a peer as this node sees it. */
export type PeerState = 'connecting' | 'alive' | 'suspect' | 'dead' | 'left';

/** One peer in `status()`. */
export interface PeerStatus {
  /** Its node id; null for a peers-list address never reached. */
  readonly nodeId: string | null;
  /** The peers-list address it was dialled at, if any. */
  readonly address: string | null;
  /** The listen address it announced. */
  readonly listen: string | null;
  readonly state: PeerState;
  /** Which side dialled the link in use; null when there is none. */
  readonly link: 'in' | 'out' | null;
  /** Since the last frame from it, ms; null if never heard. */
  readonly lastSeenMsAgo: number | null;
  /** Last heartbeat round trip, ms. */
  readonly rttMs: number | null;
  /** Estimated clock offset (peer minus this node), ms. */
  readonly clockOffsetMs: number | null;
  /** Bytes waiting to be sent to it (how far behind it is on this side). */
  readonly queuedBytes: number;
  readonly epoch: number | null;
  readonly policyVersion: string | null;
  /** Frames and bytes over the current link. */
  readonly framesIn: number;
  readonly framesOut: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Last dial or link error. */
  readonly lastError: string | null;
}

/** Which policy versions the live nodes run. */
export interface PolicyDivergence {
  /** This node's version. */
  readonly version: string | null;
  /** True when every live node that reported a version runs this node's. */
  readonly agreed: boolean;
  /** version -> node ids running it (live nodes only; `null` for nodes that set none). */
  readonly versions: Readonly<Record<string, readonly string[]>>;
  /** Live nodes whose version differs from this node's. */
  readonly divergent: readonly string[];
}

/** Counters since start. */
export interface ClusterCounters {
  authFailures: number;
  badFrames: number;
  replaysRejected: number;
  backpressureDrops: number;
  deadReports: number;
  invalidEntries: number;
  stateFull: number;
  clockSkew: number;
  /** Registers received that changed local state. */
  entriesApplied: number;
  /** Registers written locally. */
  entriesWritten: number;
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
}

/** What `status()` returns. */
export interface ClusterStatus {
  readonly nodeId: string;
  readonly epoch: number;
  /** The bound listen address (HOST:PORT). */
  readonly listen: string;
  readonly protocolVersion: number;
  readonly peers: readonly PeerStatus[];
  readonly policy: PolicyDivergence;
  /** Registers held per keyspace (tombstones and expired values kept for the grace period included). */
  readonly entries: Readonly<Record<KeyspaceName, number>>;
  readonly counters: Readonly<ClusterCounters>;
}

/** Changes to one keyspace, delivered together. */
export interface ChangeSet<U, R> {
  /** 'local': written on this node (delivered synchronously); 'remote': received from a peer. */
  readonly origin: 'local' | 'remote';
  readonly upserted: readonly U[];
  readonly removed: readonly R[];
}

/** A peer's state changed. */
export interface PeerEvent {
  readonly nodeId: string | null;
  readonly address: string | null;
  readonly state: PeerState;
  readonly previous: PeerState | null;
}

/** Events of a ClusterNode. Listeners must not throw (a local write would report their error). */
export interface ClusterEvents {
  quarantine: [ChangeSet<QuarantineEntry, string>];
  policy: [ChangeSet<PolicyOp, string>];
  health: [ChangeSet<HealthReport, { node: string; pool: string; backend: string }>];
  sticky: [ChangeSet<StickyEntry, string>];
  peer: [PeerEvent];
  divergence: [PolicyDivergence];
}

interface PeerRecord {
  readonly nodeId: string;
  state: PeerState;
  lastSeen: number;
  listen: string;
  epoch: number;
  address: string | null;
  lastError: string | null;
}

interface DialTarget {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** Dial from the listen address (the cluster interface), when it is a specific IP of the same family. */
  readonly localAddress: string | undefined;
  nodeId: string | undefined;
  self: boolean;
  attempts: number;
  nextAttemptAt: number;
  socket: TLSSocket | undefined;
  link: PeerLink | undefined;
  firstAttemptAt: number;
  reportedDead: boolean;
  lastError: string | null;
}

const RULES: Readonly<Record<KeyspaceName, KeyspaceRules<unknown>>> = {
  members: MEMBERS,
  quarantine: QUARANTINE,
  policy: POLICY,
  health: HEALTH,
  sticky: STICKY,
};

/** Longest wait between two dial attempts, ms. */
const MAX_BACKOFF_MS = 2000;

function positiveInt(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min)
    throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
  return value;
}

/**
 * A cluster node. Start with `await ClusterNode.start(options)`; the returned node is listening and
 * dialling its peers (it never waits for them). Read and write the replicated state through
 * `quarantine`, `policy`, `health` and `sticky`; watch changes with `on(...)`; `status()` for the
 * admin API; `stop()` to leave.
 */
export class ClusterNode extends EventEmitter<ClusterEvents> {
  readonly nodeId: string;
  /** Changes on every start (its start time in ms x 1024 plus random bits). */
  readonly epoch: number;
  readonly quarantine: QuarantineView;
  readonly policy: PolicyView;
  readonly health: HealthState;
  readonly sticky: StickyTable;

  readonly #settings: Settings;
  readonly #auth: ClusterAuth;
  readonly #serverAuth: ServerAuth;
  readonly #log: ClusterLog;
  readonly #now: () => number;
  readonly #clock: HybridClock;
  readonly #maps: Record<KeyspaceName, LwwMap<unknown>>;
  readonly #epochs = new EpochGuard();
  readonly #links = new Set<PeerLink>();
  readonly #ready = new Map<string, PeerLink>();
  readonly #peers = new Map<string, PeerRecord>();
  readonly #dialers = new Map<string, DialTarget>();
  readonly #server: Server;
  readonly #listenText: string;
  readonly #authLog = new LogRateLimiter(10);
  readonly #skewLog = new LogRateLimiter(1);
  readonly #counters: ClusterCounters = {
    authFailures: 0,
    badFrames: 0,
    replaysRejected: 0,
    backpressureDrops: 0,
    deadReports: 0,
    invalidEntries: 0,
    stateFull: 0,
    clockSkew: 0,
    entriesApplied: 0,
    entriesWritten: 0,
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
  #bound = '';
  #policyVersion: string | null;
  #startedAt: number;
  #stopping = false;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #antiEntropyTimer: NodeJS.Timeout | undefined;
  /** Local writes not yet sent, per keyspace. */
  #outgoing = new Map<KeyspaceName, Register<unknown>[]>();
  #flushScheduled = false;
  /** Remote changes not yet reported: per keyspace, key -> whether it was visible before. */
  #incoming = new Map<KeyspaceName, Map<string, boolean>>();
  #reportScheduled = false;
  /** Links waiting for their (re)connect pull, and the pull in flight. */
  #pullQueue: PeerLink[] = [];
  #pull: { link: PeerLink; pending: Set<KeyspaceName>; deadline: number } | undefined;
  #divergenceKey = '';
  #lastDivergent = false;
  /** Set once the listener is bound (the hello announces the bound address). */
  #linkSettings!: LinkSettings;

  private constructor(opts: ClusterNodeOptions, settings: Settings, auth: ClusterAuth) {
    super();
    this.nodeId = opts.nodeId;
    this.#settings = settings;
    this.#auth = auth;
    this.#serverAuth = serverAuth(auth, settings.deadMs);
    this.#log = opts.log ?? pino({ enabled: false });
    this.#now = opts.now ?? Date.now;
    this.#startedAt = this.#now();
    this.epoch = this.#startedAt * 1024 + randomInt(1024);
    this.#clock = new HybridClock(this.nodeId, settings.maxClockSkewMs, this.#now);
    this.#policyVersion = opts.policyVersion ?? null;
    this.#listenText = opts.listen;
    const maps = {} as Record<KeyspaceName, LwwMap<unknown>>;
    for (const ks of KEYSPACES) maps[ks] = new LwwMap(ks, settings.tombstoneMs, settings.maxEntries);
    this.#maps = maps;
    const store: KeyspaceStore = {
      nodeId: this.nodeId,
      now: this.#now,
      map: <V>(ks: KeyspaceName) => this.#maps[ks] as LwwMap<V>,
      write: <V>(ks: KeyspaceName, key: string, value: V | null, expiresAt: number) =>
        this.#writeLocal(ks, key, value, expiresAt) as Register<V>,
      liveNodes: () => this.#liveNodes(),
      maxValueBytes: Math.floor(settings.maxFrameBytes / 2),
    };
    this.quarantine = new QuarantineView(store);
    this.policy = new PolicyView(store);
    this.health = new HealthState(store);
    this.sticky = new StickyTable(store);
    this.#server = createServer(this.#serverAuth.options, (socket) => this.#accept(socket));
    this.#server.maxConnections = settings.maxConnections;
    this.#server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) =>
      this.#authFailed(socket.remoteAddress ?? '?', err.code ?? err.message, 'in'),
    );
  }

  /**
   * Binds the sync listener and starts dialling the peers.
   * @throws ClusterError SEGLB_CLUSTER_KEY (key or TLS files), SEGLB_CLUSTER_BIND (listener)
   * @throws RangeError / TypeError for options out of range (validated config never has them)
   */
  static async start(opts: ClusterNodeOptions): Promise<ClusterNode> {
    if (typeof opts.nodeId !== 'string' || !NODE_ID_PATTERN.test(opts.nodeId)) {
      throw new TypeError(`nodeId must match ${NODE_ID_PATTERN}, got ${String(opts.nodeId)}`);
    }
    const settings = resolveSettings(opts);
    const auth = loadAuth(opts);
    const node = new ClusterNode(opts, settings, auth);
    await node.#bind();
    node.#begin(opts.peers ?? []);
    return node;
  }

  /** The bound listen address, HOST:PORT. */
  get address(): string {
    return this.#bound;
  }

  /**
   * Replaces the peers list (config reload). New addresses are dialled; links dialled for removed
   * addresses are closed; links the peers dialled stay.
   * @throws NetError SEGLB_NET_INVALID_ENDPOINT for an address that is not HOST:PORT (a validated
   *   config has none)
   */
  setPeers(addresses: readonly string[]): void {
    const wanted = new Set(addresses);
    for (const [address, d] of this.#dialers) {
      if (wanted.has(address)) continue;
      this.#dialers.delete(address);
      d.socket?.destroy();
      // No "leaving" word: this node stays in the cluster, only this link goes.
      d.link?.close('removed');
    }
    for (const address of wanted) {
      if (this.#dialers.has(address)) continue;
      const ep = parseEndpoint(address);
      const own = parseEndpoint(this.#bound);
      const specific = own.host !== '0.0.0.0' && own.host !== '::' && own.family === ep.family;
      this.#dialers.set(address, {
        address,
        host: ep.host,
        port: ep.port,
        localAddress: specific ? own.host : undefined,
        nodeId: undefined,
        self: ep.host === own.host && ep.port === own.port,
        attempts: 0,
        nextAttemptAt: 0,
        socket: undefined,
        link: undefined,
        firstAttemptAt: this.#now(),
        reportedDead: false,
        lastError: null,
      });
    }
    this.#dialDue();
  }

  /**
   * Sets the policy version (hash of the applied configuration) this node runs; replicated so that
   * every node reports divergence.
   */
  setPolicyVersion(version: string | null): void {
    if (version !== null && (typeof version !== 'string' || version.length === 0 || version.length > 128)) {
      throw new ClusterError('SEGLB_CLUSTER_INVALID_ENTRY', 'a policy version is 1 to 128 characters');
    }
    if (version === this.#policyVersion) return;
    this.#policyVersion = version;
    this.#writeMember();
    this.#checkDivergence();
  }

  /** Peers, policy agreement, state sizes and counters. */
  status(): ClusterStatus {
    const now = this.#now();
    const peers: PeerStatus[] = [];
    const members = this.#maps.members as LwwMap<MemberInfo>;
    const listed = new Set<string>();
    for (const p of this.#peers.values()) {
      listed.add(p.nodeId);
      const link = this.#ready.get(p.nodeId);
      peers.push({
        nodeId: p.nodeId,
        address: p.address,
        listen: p.listen,
        state: p.state,
        link: link === undefined ? null : link.accepted ? 'in' : 'out',
        lastSeenMsAgo: now - p.lastSeen,
        rttMs: link === undefined || link.rttMs < 0 ? null : link.rttMs,
        clockOffsetMs: link === undefined || link.rttMs < 0 ? null : Math.round(link.offsetMs),
        queuedBytes: link?.queuedBytes ?? 0,
        epoch: p.epoch,
        policyVersion: members.get(p.nodeId, now)?.policyVersion ?? null,
        framesIn: link?.framesIn ?? 0,
        framesOut: link?.framesOut ?? 0,
        bytesIn: link?.bytesIn ?? 0,
        bytesOut: link?.bytesOut ?? 0,
        lastError: p.lastError,
      });
    }
    for (const d of this.#dialers.values()) {
      if (d.self || (d.nodeId !== undefined && listed.has(d.nodeId))) continue;
      peers.push({
        nodeId: d.nodeId ?? null,
        address: d.address,
        listen: null,
        state: d.reportedDead ? 'dead' : 'connecting',
        link: null,
        lastSeenMsAgo: null,
        rttMs: null,
        clockOffsetMs: null,
        queuedBytes: 0,
        epoch: null,
        policyVersion: null,
        framesIn: 0,
        framesOut: 0,
        bytesIn: 0,
        bytesOut: 0,
        lastError: d.lastError,
      });
    }
    const entries = {} as Record<KeyspaceName, number>;
    for (const ks of KEYSPACES) entries[ks] = this.#maps[ks].size;
    const counters = { ...this.#counters };
    for (const link of this.#links) {
      counters.framesIn += link.framesIn;
      counters.framesOut += link.framesOut;
      counters.bytesIn += link.bytesIn;
      counters.bytesOut += link.bytesOut;
    }
    return {
      nodeId: this.nodeId,
      epoch: this.epoch,
      listen: this.#bound,
      protocolVersion: PROTOCOL_VERSION,
      peers,
      policy: this.#divergence(),
      entries,
      counters,
    };
  }

  /**
   * Leaves the cluster: closes every link (telling peers "leaving" unless `announce` is false, which
   * looks like a crash to them) and the listener.
   */
  async stop(opts: { announce?: boolean } = {}): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#antiEntropyTimer);
    const announce = opts.announce !== false;
    for (const d of this.#dialers.values()) d.socket?.destroy();
    for (const link of [...this.#links]) {
      if (announce && link.state === 'ready') link.close('stopping', 'leaving');
      else link.close('stopping');
    }
    if (!announce) for (const link of this.#links) link.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---- start-up ----

  async #bind(): Promise<void> {
    let ep: { host: string; port: number };
    try {
      ep = parseEndpoint(this.#listenText, true);
    } catch (err) {
      throw new ClusterError('SEGLB_CLUSTER_BIND', `bad cluster listen address ${this.#listenText}`, {
        cause: err,
      });
    }
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(
          new ClusterError(
            'SEGLB_CLUSTER_BIND',
            `cannot listen on ${this.#listenText} (cluster sync): ${err.code ?? String(err)}`,
            { cause: err },
          ),
        );
      };
      this.#server.once('error', onError);
      this.#server.listen({ host: ep.host, port: ep.port }, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
    const a = this.#server.address() as AddressInfo;
    this.#bound = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    this.#linkSettings = {
      nodeId: this.nodeId,
      epoch: this.epoch,
      listen: this.#bound,
      maxFrameBytes: this.#settings.maxFrameBytes,
      maxQueueBytes: this.#settings.maxQueueBytes,
      helloTimeoutMs: this.#settings.deadMs,
      now: this.#now,
      clock: () => {
        const stamp = this.#clock.now();
        return { wall: stamp.wall, counter: stamp.counter };
      },
      empty: () => KEYSPACES.reduce((n, ks) => n + this.#maps[ks].size, 0) <= 1,
    };
    this.#server.on('error', (err) =>
      this.#log.error({ event: 'cluster-listener', err }, 'cluster listener error'),
    );
  }

  #begin(peers: readonly string[]): void {
    this.#writeMember();
    this.#log.info(
      {
        event: 'cluster-listening',
        node: this.nodeId,
        address: this.#bound,
        auth: this.#auth.kind,
        peers: peers.length,
      },
      'cluster sync listening',
    );
    this.#heartbeatTimer = setInterval(() => this.#heartbeat(), this.#settings.heartbeatMs);
    this.#heartbeatTimer.unref();
    this.#antiEntropyTimer = setInterval(() => this.#antiEntropy(), this.#settings.antiEntropyMs);
    this.#antiEntropyTimer.unref();
    this.setPeers(peers);
  }

  #writeMember(): void {
    const info: MemberInfo = { listen: this.#bound, epoch: this.epoch, policyVersion: this.#policyVersion };
    this.#writeLocal('members', this.nodeId, info, Number.POSITIVE_INFINITY);
  }

  // ---- links ----

  #accept(socket: TLSSocket): void {
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    const link = new PeerLink(
      socket,
      { accepted: true, provenId: this.#serverAuth.provenId(socket) },
      this.#linkSettings,
      this.#handlers,
    );
    this.#links.add(link);
  }

  #dialDue(): void {
    if (this.#stopping) return;
    const now = this.#now();
    for (const d of this.#dialers.values()) {
      if (d.self || d.socket !== undefined || d.link !== undefined || now < d.nextAttemptAt) continue;
      if (d.nodeId !== undefined && this.#ready.has(d.nodeId)) continue;
      this.#dial(d);
    }
  }

  #dial(d: DialTarget): void {
    d.attempts++;
    // tls.connect hands localAddress on to net.connect (its typings leave it out).
    const options: ConnectionOptions & { localAddress?: string | undefined } = {
      ...clientTlsOptions(this.#auth, this.nodeId),
      host: d.host,
      port: d.port,
      localAddress: d.localAddress,
    };
    const socket = tlsConnect(options);
    d.socket = socket;
    const timer = setTimeout(() => socket.destroy(new Error('handshake timeout')), this.#settings.deadMs);
    timer.unref();
    let handshaken = false;
    socket.once('secureConnect', () => {
      handshaken = true;
      clearTimeout(timer);
      d.socket = undefined;
      if (this.#stopping || this.#dialers.get(d.address) !== d) {
        socket.destroy();
        return;
      }
      const link = new PeerLink(
        socket,
        { accepted: false, dialAddress: d.address, provenId: provenServerId(this.#auth, socket) },
        this.#linkSettings,
        this.#handlers,
      );
      d.link = link;
      this.#links.add(link);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (handshaken) return;
      const code = err.code ?? err.message;
      d.lastError = code;
      if (code.startsWith('ERR_SSL')) this.#authFailed(d.address, code, 'out');
    });
    socket.once('close', () => {
      clearTimeout(timer);
      if (handshaken) return;
      if (d.socket === socket) d.socket = undefined;
      d.nextAttemptAt = this.#now() + this.#backoff(d.attempts);
    });
  }

  #backoff(attempts: number): number {
    const base = Math.min(MAX_BACKOFF_MS, this.#settings.deadMs, 100 * 2 ** Math.min(attempts, 10));
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  readonly #handlers = {
    onHello: (link: PeerLink, hello: HelloMsg) => this.#onHello(link, hello),
    onMessage: (link: PeerLink, msg: Message) => this.#onMessage(link, msg),
    onClose: (link: PeerLink, reason: LinkCloseReason, error?: ClusterError) =>
      this.#onClose(link, reason, error),
  };

  #onHello(link: PeerLink, hello: HelloMsg): void {
    const peerId = link.node;
    const dialer = link.dialAddress === undefined ? undefined : this.#dialers.get(link.dialAddress);
    if (peerId === this.nodeId) {
      if (link.epoch === this.epoch) {
        // This node dialled itself (its own address is in the peers list): never again.
        if (dialer) dialer.self = true;
        link.close('self', 'self');
      } else {
        link.close(
          'auth',
          undefined,
          new ClusterError(
            'SEGLB_CLUSTER_AUTH',
            `another node (${link.remoteListen}) uses this node's id ${peerId}`,
          ),
        );
      }
      return;
    }
    const verdict = this.#epochs.admit(peerId, link.epoch);
    if (verdict === 'stale') {
      link.close(
        'stale-epoch',
        'stale-epoch',
        new ClusterError(
          'SEGLB_CLUSTER_REPLAY',
          `hello from node ${peerId} with epoch ${link.epoch}, older than epoch ${this.#epochs.highest(peerId)} already seen`,
        ),
      );
      return;
    }
    if (!this.#clock.observe(hello.clock)) {
      this.#counters.clockSkew++;
      this.#log.warn(
        {
          event: 'cluster-clock-skew',
          code: 'SEGLB_CLUSTER_CLOCK_SKEW',
          peer: peerId,
          peerWall: hello.clock.wall,
        },
        'cluster peer clock is too far ahead',
      );
    }
    const existing = this.#ready.get(peerId);
    if (existing !== undefined && existing.epoch >= link.epoch && !this.#keepNewer(existing, link)) {
      link.close('duplicate', 'duplicate');
      if (dialer) dialer.nodeId = peerId;
      return;
    }
    link.markReady();
    this.#ready.set(peerId, link);
    // Replaced after the new link is in place, so the peer never looks gone in between. A link of
    // an older epoch belongs to the peer's previous run: a zombie, closed without a word.
    if (existing !== undefined) {
      if (existing.epoch < link.epoch) existing.close('stale-epoch');
      else existing.close('duplicate', 'duplicate');
    }
    if (dialer) {
      dialer.nodeId = peerId;
      dialer.attempts = 0;
      dialer.reportedDead = false;
      dialer.lastError = null;
    }
    let peer = this.#peers.get(peerId);
    if (peer === undefined) {
      peer = {
        nodeId: peerId,
        state: 'connecting',
        lastSeen: link.lastFrameAt,
        listen: link.remoteListen,
        epoch: link.epoch,
        address: link.dialAddress ?? null,
        lastError: null,
      };
      this.#peers.set(peerId, peer);
    }
    peer.listen = link.remoteListen;
    peer.epoch = link.epoch;
    peer.lastSeen = link.lastFrameAt;
    peer.lastError = null;
    if (link.dialAddress !== undefined) peer.address = link.dialAddress;
    this.#setPeerState(peer, 'alive');
    // Who this node is (policy version, epoch), at once rather than at the next digest round.
    const self = this.#maps.members.register(this.nodeId);
    if (self !== undefined)
      link.sendPayload(MSG.ENTRIES, encodeBody({ ks: 'members', entries: [toWire(self)] }));
    // Anti-entropy on (re)connect: pull what differs from this peer (once the pull in flight, if
    // any, is done); the peer does the same from its side. A peer that just started empty has
    // nothing to give.
    if (hello.empty !== true) {
      this.#pullQueue.push(link);
      this.#pumpPulls();
    }
  }

  /** True while a (re)connect pull is in flight or queued: digest rounds wait for it. */
  #pulling(): boolean {
    return this.#pull !== undefined || this.#pullQueue.some((l) => l.state === 'ready');
  }

  /**
   * Starts the next (re)connect pull: send every keyspace's buckets; the peer pushes what differs
   * and marks the end. One pull at a time, so a node that restarts empty takes its state from one
   * peer, then only the remaining differences from the next, not everything from each of them.
   */
  #pumpPulls(): void {
    const current = this.#pull;
    if (current !== undefined && current.link.state === 'ready' && this.#now() < current.deadline) return;
    this.#pull = undefined;
    let link = this.#pullQueue.shift();
    while (link !== undefined && link.state !== 'ready') link = this.#pullQueue.shift();
    if (link === undefined) return;
    this.#pull = { link, pending: new Set(KEYSPACES), deadline: this.#now() + this.#settings.deadMs * 4 };
    for (const ks of KEYSPACES) {
      const buckets = sparseBuckets(this.#maps[ks].digest(Number.POSITIVE_INFINITY));
      link.send(MSG.BUCKETS, { ks, before: null, answer: false, pull: true, buckets } satisfies BucketsMsg);
    }
  }

  /** A pushed keyspace ended (ENTRIES `done`) on a link. */
  #pullDone(link: PeerLink, ks: KeyspaceName): void {
    const current = this.#pull;
    if (current === undefined || current.link !== link) return;
    current.pending.delete(ks);
    if (current.pending.size === 0) {
      this.#pull = undefined;
      this.#pumpPulls();
    }
  }

  /**
   * Of two links to one peer, both sides keep the same one: the link dialled by the smaller node
   * id; for two links dialled by the same side, the one from the lower dialling port.
   */
  #keepNewer(existing: PeerLink, candidate: PeerLink): boolean {
    const dialledBy = (l: PeerLink) => (l.accepted ? l.node : this.nodeId);
    const smaller = [this.nodeId, candidate.node].sort()[0];
    const e = dialledBy(existing) === smaller;
    const c = dialledBy(candidate) === smaller;
    if (e !== c) return c;
    const port = (l: PeerLink) => (l.accepted ? l.socket.remotePort : l.socket.localPort) ?? 0;
    return port(candidate) < port(existing);
  }

  #onClose(link: PeerLink, reason: LinkCloseReason, error?: ClusterError): void {
    this.#links.delete(link);
    this.#counters.framesIn += link.framesIn;
    this.#counters.framesOut += link.framesOut;
    this.#counters.bytesIn += link.bytesIn;
    this.#counters.bytesOut += link.bytesOut;
    const who = link.node || link.provenId || link.socket.remoteAddress || '?';
    if (error !== undefined) {
      if (error.code === 'SEGLB_CLUSTER_FRAME') this.#counters.badFrames++;
      else if (error.code === 'SEGLB_CLUSTER_REPLAY') this.#counters.replaysRejected++;
      else if (error.code === 'SEGLB_CLUSTER_AUTH') this.#counters.authFailures++;
      else if (error.code === 'SEGLB_CLUSTER_BACKPRESSURE') this.#counters.backpressureDrops++;
      this.#log.warn(
        {
          event: 'cluster-link-dropped',
          code: error.code,
          peer: who,
          remote: link.socket.remoteAddress,
          reason,
          error: error.message,
        },
        'cluster link dropped',
      );
      const peer = link.node ? this.#peers.get(link.node) : undefined;
      if (peer) peer.lastError = `${error.code}: ${error.message}`;
    } else {
      this.#log.debug({ event: 'cluster-link-closed', peer: who, reason }, 'cluster link closed');
    }
    if (link.dialAddress !== undefined) {
      const d = this.#dialers.get(link.dialAddress);
      if (d !== undefined && d.link === link) {
        d.link = undefined;
        d.nextAttemptAt = this.#now() + this.#backoff(d.attempts);
        if (error !== undefined) d.lastError = error.code;
      }
    }
    if (this.#pull?.link === link) this.#pumpPulls();
    if (this.#ready.get(link.node) === link) {
      this.#ready.delete(link.node);
      const peer = this.#peers.get(link.node);
      if (peer !== undefined && !this.#stopping) {
        if (reason === 'leaving') this.#setPeerState(peer, 'left');
        else if (peer.state === 'alive') this.#setPeerState(peer, 'suspect');
      }
    }
  }

  #setPeerState(peer: PeerRecord, state: PeerState): void {
    if (peer.state === state) return;
    const previous = peer.state;
    peer.state = state;
    const fields = { event: 'cluster-peer', peer: peer.nodeId, state, previous, listen: peer.listen };
    if (state === 'dead') {
      this.#counters.deadReports++;
      this.#log.warn({ ...fields, code: 'SEGLB_CLUSTER_PEER_DEAD' }, 'cluster peer is dead');
    } else if (state === 'suspect') {
      this.#log.info(fields, 'cluster peer is suspect');
    } else {
      this.#log.info(fields, state === 'left' ? 'cluster peer left' : `cluster peer is ${state}`);
    }
    this.emit('peer', { nodeId: peer.nodeId, address: peer.address, state, previous });
    this.#checkDivergence();
  }

  #authFailed(remote: string, reason: string, direction: 'in' | 'out'): void {
    this.#counters.authFailures++;
    const suppressed = this.#authLog.take(this.#now());
    if (suppressed < 0) return;
    this.#log.warn(
      { event: 'cluster-auth-failed', code: 'SEGLB_CLUSTER_AUTH', remote, reason, direction, suppressed },
      'cluster peer refused: authentication failed',
    );
  }

  // ---- timers ----

  #heartbeat(): void {
    const now = this.#now();
    const { suspectMs, deadMs } = this.#settings;
    for (const peer of this.#peers.values()) {
      const link = this.#ready.get(peer.nodeId);
      if (link !== undefined) {
        peer.lastSeen = Math.max(peer.lastSeen, link.lastFrameAt);
        link.ping(now);
      }
      if (peer.state === 'left' || peer.state === 'dead') continue;
      const silent = now - peer.lastSeen;
      if (silent >= deadMs) {
        link?.close('dead');
        this.#setPeerState(peer, 'dead');
      } else if (silent >= suspectMs) {
        this.#setPeerState(peer, 'suspect');
      } else if (link !== undefined) {
        this.#setPeerState(peer, 'alive');
      }
    }
    for (const d of this.#dialers.values()) {
      if (d.self || d.reportedDead || d.nodeId !== undefined || now - d.firstAttemptAt < deadMs) continue;
      d.reportedDead = true;
      this.#counters.deadReports++;
      this.#log.warn(
        {
          event: 'cluster-peer',
          code: 'SEGLB_CLUSTER_PEER_DEAD',
          address: d.address,
          state: 'dead',
          error: d.lastError,
        },
        'cluster peer unreachable',
      );
      this.emit('peer', { nodeId: null, address: d.address, state: 'dead', previous: 'connecting' });
    }
    this.#dialDue();
    this.#pumpPulls();
  }

  #antiEntropy(): void {
    const now = this.#now();
    for (const ks of KEYSPACES) this.#maps[ks].sweep(now);
    // While catching up, a digest round would only make every peer push what the pull brings.
    if (this.#ready.size === 0 || this.#pulling()) return;
    // Leave out the last round's writes: they are still in flight as deltas.
    const before = now - this.#settings.antiEntropyMs;
    const roots: Record<string, [number, number, number]> = {};
    for (const ks of KEYSPACES) {
      const d = this.#maps[ks].digest(before);
      roots[ks] = [d.rootA, d.rootB, d.count];
    }
    const msg: RootsMsg = { before, roots };
    for (const link of this.#ready.values()) link.send(MSG.ROOTS, msg);
  }

  // ---- messages ----

  #onMessage(link: PeerLink, msg: Message): void {
    if (link.state !== 'ready') return;
    switch (msg.type) {
      case MSG.ROOTS:
        this.#onRoots(link, msg.body);
        return;
      case MSG.BUCKETS:
        this.#onBuckets(link, msg.body);
        return;
      case MSG.ENTRIES:
        this.#onEntries(msg.body);
        if (msg.body.done === true) this.#pullDone(link, msg.body.ks as KeyspaceName);
        return;
      default:
        return;
    }
  }

  #onRoots(link: PeerLink, msg: RootsMsg): void {
    if (this.#pulling()) return; // the pull in progress repairs more, and the next round checks
    const before = msg.before ?? Number.POSITIVE_INFINITY;
    for (const ks of KEYSPACES) {
      const mine = this.#maps[ks].digest(before);
      const theirs = msg.roots[ks];
      if (theirs && theirs[0] === mine.rootA && theirs[1] === mine.rootB && theirs[2] === mine.count)
        continue;
      link.send(MSG.BUCKETS, {
        ks,
        before: msg.before,
        answer: true,
        buckets: sparseBuckets(mine),
      } satisfies BucketsMsg);
    }
  }

  #onBuckets(link: PeerLink, msg: BucketsMsg): void {
    const ks = msg.ks as KeyspaceName;
    if (!Object.hasOwn(RULES, ks)) return;
    const map = this.#maps[ks];
    const mine = map.digest(msg.before ?? Number.POSITIVE_INFINITY);
    const { marked, count } = differingBuckets(mine, msg.buckets);
    if (count > 0) {
      const regs = map.registersInBuckets(marked);
      if (regs.length > 0) link.sendBulk(MSG.ENTRIES, this.#payloads(ks, regs));
    }
    if (msg.pull === true) link.sendBulk(MSG.ENTRIES, [encodeBody({ ks, entries: [], done: true })]);
    if (msg.answer) {
      link.send(MSG.BUCKETS, {
        ks,
        before: msg.before,
        answer: false,
        buckets: sparseBuckets(mine),
      } satisfies BucketsMsg);
    }
  }

  #onEntries(msg: EntriesMsg): void {
    const ks = msg.ks as KeyspaceName;
    if (!Object.hasOwn(RULES, ks)) return;
    const rules = RULES[ks];
    const map = this.#maps[ks];
    const now = this.#now();
    let touched = this.#incoming.get(ks);
    for (const w of msg.entries) {
      const reg = fromWire(rules, w);
      if (reg === undefined) {
        this.#counters.invalidEntries++;
        continue;
      }
      if (!this.#clock.observe(reg.stamp)) {
        this.#counters.clockSkew++;
        if (this.#skewLog.take(now) >= 0) {
          this.#log.warn(
            {
              event: 'cluster-clock-skew',
              code: 'SEGLB_CLUSTER_CLOCK_SKEW',
              origin: reg.stamp.node,
              ks,
              wall: reg.stamp.wall,
            },
            'cluster entry refused: stamped too far ahead of this clock',
          );
        }
        continue;
      }
      const before = map.register(reg.key);
      const outcome = map.merge(reg, now, before);
      if (outcome === 'stale') continue;
      if (outcome === 'full') {
        this.#counters.stateFull++;
        continue;
      }
      this.#counters.entriesApplied++;
      if (touched === undefined) {
        touched = new Map();
        this.#incoming.set(ks, touched);
      }
      if (!touched.has(reg.key)) touched.set(reg.key, isVisible(before, now));
    }
    if (touched !== undefined && !this.#reportScheduled) {
      this.#reportScheduled = true;
      setImmediate(() => this.#reportIncoming());
    }
  }

  /** ENTRIES payloads of registers, produced lazily (see entryPayloads). */
  #payloads(ks: KeyspaceName, regs: readonly Register<unknown>[]): Generator<Buffer, void, undefined> {
    return entryPayloads(ks, regs, toWire, this.#settings.maxFrameBytes - HEADER_BYTES - 64, () =>
      this.#log.warn({ event: 'cluster-oversized', ks }, 'a register too large to send was skipped'),
    );
  }

  // ---- local writes and change reports ----

  #writeLocal(ks: KeyspaceName, key: string, value: unknown, expiresAt: number): Register<unknown> {
    const map = this.#maps[ks];
    if (!map.hasRoom(key)) {
      throw new ClusterError(
        'SEGLB_CLUSTER_STATE_FULL',
        `the replicated ${ks} table holds ${map.size} keys (cluster.max_entries)`,
      );
    }
    const now = this.#now();
    const reg = makeRegister(key, this.#clock.now(), expiresAt, value);
    const wasVisible = isVisible(map.register(key), now);
    map.merge(reg, now);
    this.#counters.entriesWritten++;
    let queue = this.#outgoing.get(ks);
    if (queue === undefined) {
      queue = [];
      this.#outgoing.set(ks, queue);
    }
    queue.push(reg);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flushOutgoing());
    }
    this.#report(ks, 'local', new Map([[key, wasVisible]]));
    return reg;
  }

  /** Sends the writes of this turn of the event loop to every ready peer, in as few frames as fit. */
  #flushOutgoing(): void {
    this.#flushScheduled = false;
    const outgoing = this.#outgoing;
    this.#outgoing = new Map();
    if (this.#ready.size === 0) return; // peers catch up through the digest exchange
    for (const [ks, regs] of outgoing) {
      // Encoded once for every peer. Most turns fit one frame; a bulk write goes out as the
      // sockets drain.
      const payloads = [...this.#payloads(ks, regs)];
      for (const link of this.#ready.values()) {
        if (payloads.length === 1) link.sendPayload(MSG.ENTRIES, payloads[0] as Buffer);
        else link.sendBulk(MSG.ENTRIES, payloads);
      }
    }
  }

  #reportIncoming(): void {
    this.#reportScheduled = false;
    const incoming = this.#incoming;
    this.#incoming = new Map();
    for (const [ks, touched] of incoming) this.#report(ks, 'remote', touched);
  }

  /** Emits one change set for keys touched (key -> visible before), from their current registers. */
  #report(ks: KeyspaceName, origin: 'local' | 'remote', touched: ReadonlyMap<string, boolean>): void {
    const now = this.#now();
    const map = this.#maps[ks];
    if (ks === 'members') {
      this.#checkDivergence();
      return;
    }
    const upserted: Register<unknown>[] = [];
    const removed: string[] = [];
    for (const [key, was] of touched) {
      const reg = map.register(key);
      if (isVisible(reg, now)) upserted.push(reg as Register<unknown>);
      else if (was) removed.push(key);
    }
    if (upserted.length === 0 && removed.length === 0) return;
    switch (ks) {
      case 'quarantine':
        this.emit('quarantine', {
          origin,
          upserted: upserted.map((r) => quarantineEntryOf(r as Register<QuarantineValue>)),
          removed,
        });
        return;
      case 'policy':
        this.emit('policy', {
          origin,
          upserted: upserted.map((r) => ({ id: r.key, op: r.value, stamp: r.stamp, expiresAt: r.expiresAt })),
          removed,
        });
        return;
      case 'health': {
        const split = (key: string) => {
          const [node, pool, backend] = splitHealthKey(key) as [string, string, string];
          return { node, pool, backend };
        };
        this.emit('health', {
          origin,
          upserted: upserted.map((r) => ({ ...split(r.key), state: r.value as BackendState })),
          removed: removed.map(split),
        });
        return;
      }
      case 'sticky':
        this.emit('sticky', {
          origin,
          upserted: upserted.map((r) => ({ key: r.key, backend: r.value as string, expiresAt: r.expiresAt })),
          removed,
        });
        return;
    }
  }

  // ---- membership views ----

  #liveNodes(): Set<string> {
    const live = new Set<string>([this.nodeId]);
    for (const p of this.#peers.values())
      if (p.state === 'alive' || p.state === 'suspect') live.add(p.nodeId);
    return live;
  }

  #divergence(): PolicyDivergence {
    const members = this.#maps.members as LwwMap<MemberInfo>;
    const now = this.#now();
    const versions: Record<string, string[]> = {};
    const divergent: string[] = [];
    for (const node of [...this.#liveNodes()].sort()) {
      const v = node === this.nodeId ? this.#policyVersion : (members.get(node, now)?.policyVersion ?? null);
      const key = v ?? 'null';
      (versions[key] ??= []).push(node);
      if (v !== null && v !== this.#policyVersion) divergent.push(node);
    }
    return { version: this.#policyVersion, agreed: divergent.length === 0, versions, divergent };
  }

  #checkDivergence(): void {
    const d = this.#divergence();
    const key = JSON.stringify(d.versions);
    if (key === this.#divergenceKey) return;
    const wasAgreed = this.#divergenceKey === '' || !this.#lastDivergent;
    this.#divergenceKey = key;
    this.#lastDivergent = !d.agreed;
    if (!d.agreed) {
      this.#log.warn(
        { event: 'cluster-divergence', code: 'SEGLB_CLUSTER_POLICY_DIVERGENCE', versions: d.versions },
        'cluster nodes run different policy versions',
      );
    } else if (!wasAgreed) {
      this.#log.info(
        { event: 'cluster-divergence', versions: d.versions },
        'cluster nodes agree on the policy version',
      );
    }
    this.emit('divergence', d);
  }
}

function resolveSettings(opts: ClusterNodeOptions): Settings {
  const pick = (name: keyof Settings, min: number) =>
    positiveInt(name, opts[name] ?? CLUSTER_DEFAULTS[name], min);
  const s: Settings = {
    heartbeatMs: pick('heartbeatMs', 10),
    suspectMs: pick('suspectMs', 20),
    deadMs: pick('deadMs', 30),
    antiEntropyMs: pick('antiEntropyMs', 10),
    maxFrameBytes: pick('maxFrameBytes', 4096),
    maxQueueBytes: pick('maxQueueBytes', 65_536),
    maxEntries: pick('maxEntries', 1),
    tombstoneMs: pick('tombstoneMs', 0),
    maxClockSkewMs: pick('maxClockSkewMs', 0),
    maxConnections: pick('maxConnections', 1),
  };
  if (!(s.heartbeatMs < s.suspectMs && s.suspectMs < s.deadMs)) {
    throw new RangeError(
      `heartbeatMs < suspectMs < deadMs is required (got ${s.heartbeatMs}, ${s.suspectMs}, ${s.deadMs})`,
    );
  }
  return s;
}

function loadAuth(opts: ClusterNodeOptions): ClusterAuth {
  const given = [opts.keyFile, opts.key, opts.tls].filter((x) => x !== undefined).length;
  if (given !== 1) {
    throw new ClusterError(
      'SEGLB_CLUSTER_KEY',
      'give exactly one of keyFile, key or tls for the cluster channel',
    );
  }
  if (opts.tls) return readClusterTls(opts.tls);
  if (opts.key) {
    if (opts.key.length < 32)
      throw new ClusterError('SEGLB_CLUSTER_KEY', 'the cluster key must be at least 32 bytes');
    return { kind: 'psk', key: opts.key };
  }
  const { key, looseMode } = readClusterKey(opts.keyFile as string);
  if (looseMode) {
    opts.log?.warn(
      { event: 'cluster-key-mode', file: opts.keyFile },
      'the cluster key file is readable by group or others; chmod 600 it',
    );
  }
  return { kind: 'psk', key };
}
