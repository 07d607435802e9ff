import os from 'node:os';
import { expect } from 'chai';
import { ConfigError, loadConfig, unknownSettings } from '@push/config';

/** Loads `env`, expecting a ConfigError; returns its problems. */
function problems(env: Record<string, string | undefined>): string[] {
  let caught: unknown;
  try {
    loadConfig(env);
  } catch (err) {
    caught = err;
  }
  expect(caught, JSON.stringify(env)).to.be.instanceOf(ConfigError);
  const err = caught as ConfigError;
  expect(err.message).to.contain('invalid configuration');
  for (const p of err.problems) expect(err.message).to.contain(p);
  return err.problems;
}

describe('config', () => {
  it('has working defaults with an empty environment', () => {
    const c = loadConfig({});
    expect(c.prefix).to.equal('push');
    expect(c.natsUrl).to.equal('nats://127.0.0.1:4222');
    expect(c.redisUrl).to.equal('redis://127.0.0.1:6379');
    expect(c.databaseUrl).to.equal('postgres://postgres@127.0.0.1:5432/push');
    expect(c.log).to.deep.equal({ level: 'info', pretty: false });
    expect(c.inbox).to.deep.equal({
      maxPerUser: 10_000,
      maxAgeSeconds: 30 * 24 * 3600,
      duplicateWindowSeconds: 120,
      replicas: 1,
      timeoutMs: 15_000,
    });
    expect(c.edge).to.deep.equal({
      host: '0.0.0.0',
      port: 8081,
      workers: os.availableParallelism(),
      maxConnections: 19_000,
      listenSockets: 4,
      window: 100,
      maxBackpressureBytes: 64 * 1024,
      maxFrameBytes: 1024 * 1024,
      idleTimeoutSeconds: 60,
      ping: { defaultSeconds: 25, minSeconds: 10, maxSeconds: 600 },
      retryAfterSeconds: 5,
      drainMs: 5000,
      id: undefined,
      perIp: { maxConnections: 0, connectRate: 0 },
      trustedProxies: [],
      maxAppsPerConnection: 16,
    });
    expect(c.center).to.deep.equal({
      host: '0.0.0.0',
      port: 8080,
      maxBodyBytes: 4 * 1024 * 1024,
      maxBatch: 1000,
      adminKey: undefined,
      corsOrigins: [],
    });
    expect(c.coordinator).to.deep.equal({
      host: '0.0.0.0',
      port: 8083,
      webhookBatch: { maxItems: 100, maxBytes: 256 * 1024, lingerMs: 20 },
    });
    expect(c.dispatcher).to.deep.equal({
      host: '0.0.0.0',
      port: 8082,
      edges: ['ws://127.0.0.1:8081/ws'],
      regions: {},
      corsOrigins: ['*'],
    });
  });

  it('reads overrides from the environment', () => {
    const c = loadConfig({
      PUSH_PREFIX: 'test_1',
      PUSH_NATS_URL: 'nats://nats:4222',
      PUSH_LOG_LEVEL: 'debug',
      PUSH_LOG_PRETTY: 'yes',
      PUSH_INBOX_MAX_PER_USER: '50',
      PUSH_REPLICAS: '3',
      PUSH_EDGE_PORT: '0',
      PUSH_EDGE_WORKERS: '4',
      PUSH_EDGE_WINDOW: '7',
      PUSH_EDGE_IDLE_TIMEOUT: '120',
      PUSH_EDGE_PING_MIN: '5',
      PUSH_EDGE_PING_DEFAULT: '30',
      PUSH_EDGE_PING_MAX: '100',
      PUSH_EDGE_ID: 'edge-a_1',
      PUSH_CENTER_PORT: '9000',
      PUSH_ADMIN_KEY: 'k'.repeat(16),
      PUSH_DISPATCHER_EDGES: ' ws://a:1/ws , ws://b:2/ws,,',
    });
    expect(c.prefix).to.equal('test_1');
    expect(c.natsUrl).to.equal('nats://nats:4222');
    expect(c.log).to.deep.equal({ level: 'debug', pretty: true });
    expect(c.inbox.maxPerUser).to.equal(50);
    expect(c.inbox.replicas).to.equal(3);
    expect(c.edge.port).to.equal(0);
    expect(c.edge.workers).to.equal(4);
    expect(c.edge.window).to.equal(7);
    expect(c.edge.idleTimeoutSeconds).to.equal(120);
    expect(c.edge.ping).to.deep.equal({ defaultSeconds: 30, minSeconds: 5, maxSeconds: 100 });
    expect(c.edge.id).to.equal('edge-a_1');
    expect(c.center.port).to.equal(9000);
    expect(c.center.adminKey).to.equal('k'.repeat(16));
    expect(c.dispatcher.edges).to.deep.equal(['ws://a:1/ws', 'ws://b:2/ws']);
  });

  it('refuses a default ping interval outside the allowed range', () => {
    expect(() => loadConfig({ PUSH_EDGE_PING_DEFAULT: '5' })).to.throw(ConfigError, /PUSH_EDGE_PING_DEFAULT/);
    expect(() => loadConfig({ PUSH_EDGE_PING_DEFAULT: '601' })).to.throw(ConfigError, /PUSH_EDGE_PING_DEFAULT/);
  });

  it('names PUSH_ variables that no setting reads (misspellings), but not test, bench or script ones', () => {
    expect(
      unknownSettings({
        PUSH_NATS_URL: 'x',
        PUSH_EGDE_PORT: '1',
        PUSH_TEST_LOG_LEVEL: 'x',
        PUSH_BENCH_X: '1',
        PUSH_NATS_SERVER_BIN: '/x/nats-server',
        PUSH_NATS_SERVER_BINARY: '/x/nats-server',
        HOME: '/',
      }),
    ).to.deep.equal(['PUSH_EGDE_PORT', 'PUSH_NATS_SERVER_BINARY']);
    expect(unknownSettings({ PUSH_EDGE_PORT: '1' })).to.deep.equal([]);
  });

  it('reads every spelling of a boolean', () => {
    for (const [v, expected] of [
      ['true', true],
      ['1', true],
      ['yes', true],
      ['false', false],
      ['0', false],
      ['no', false],
    ] as const) {
      expect(loadConfig({ PUSH_LOG_PRETTY: v }).log.pretty, v).to.equal(expected);
    }
    expect(problems({ PUSH_LOG_PRETTY: 'maybe' })[0]).to.match(/^PUSH_LOG_PRETTY: /);
  });

  it('treats an empty variable as unset and ignores variables outside PUSH_', () => {
    const c = loadConfig({
      PUSH_EDGE_PORT: '',
      PUSH_ADMIN_KEY: '',
      PORT: 'abc',
      PATH: '/bin',
      PUSH_EDGE_WINDOW: undefined,
    });
    expect(c.edge.port).to.equal(8081);
    expect(c.edge.window).to.equal(100);
    expect(c.center.adminKey).to.equal(undefined);
  });

  it('returns a frozen config', () => {
    const c = loadConfig({});
    expect(Object.isFrozen(c)).to.equal(true);
    expect(Object.isFrozen(c.edge)).to.equal(true);
    expect(Object.isFrozen(c.edge.ping)).to.equal(true);
    expect(Object.isFrozen(c.dispatcher.edges)).to.equal(true);
    expect(Reflect.set(c.edge, 'port', 1)).to.equal(false);
    expect(c.edge.port).to.equal(8081);
  });

  it('names the variable of a non-numeric number', () => {
    for (const v of ['abc', '80a', '8080 8081']) {
      const p = problems({ PUSH_EDGE_PORT: v });
      expect(p, v).to.have.length(1);
      expect(p[0]).to.match(/^PUSH_EDGE_PORT: /);
    }
  });

  it('names the variable of an out-of-range or fractional number', () => {
    const cases: Array<[string, string]> = [
      ['PUSH_EDGE_WINDOW', '-1'],
      ['PUSH_EDGE_WINDOW', '0'],
      ['PUSH_EDGE_WINDOW', '10001'],
      ['PUSH_EDGE_PORT', '65536'],
      ['PUSH_CENTER_PORT', '-80'],
      ['PUSH_REPLICAS', '6'],
      ['PUSH_EDGE_MAX_CONNECTIONS', '1.5'],
      ['PUSH_INBOX_MAX_AGE', '59'],
      ['PUSH_DUPLICATE_WINDOW', '0'],
    ];
    for (const [name, value] of cases) {
      const p = problems({ [name]: value });
      expect(p, `${name}=${value}`).to.have.length(1);
      expect(p[0], `${name}=${value}`).to.match(new RegExp(`^${name}: `));
    }
  });

  it('names the variable of a bad string setting', () => {
    const cases: Array<[string, string]> = [
      ['PUSH_PREFIX', 'Push'],
      ['PUSH_PREFIX', 'a.b'],
      ['PUSH_LOG_LEVEL', 'verbose'],
      ['PUSH_EDGE_ID', 'edge 1'],
      ['PUSH_ADMIN_KEY', 'short'],
    ];
    for (const [name, value] of cases) {
      expect(problems({ [name]: value })[0], `${name}=${value}`).to.match(new RegExp(`^${name}: `));
    }
  });

  it('says what each bad variable should be and what it was', () => {
    expect(problems({ PUSH_EDGE_PORT: 'abc' })).to.deep.equal(['PUSH_EDGE_PORT: expected an integer, got "abc"']);
    expect(problems({ PUSH_EDGE_WINDOW: '10001' })).to.deep.equal([
      'PUSH_EDGE_WINDOW: must be at most 10000, got 10001',
    ]);
    expect(problems({ PUSH_EDGE_WINDOW: '0' })).to.deep.equal(['PUSH_EDGE_WINDOW: must be at least 1, got 0']);
    expect(problems({ PUSH_LOG_LEVEL: 'loud' })[0]).to.equal(
      'PUSH_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    );
    expect(problems({ PUSH_LOG_PRETTY: 'maybe' })[0]).to.match(
      /expected one of true, false, 1, 0, yes, no, got "maybe"$/,
    );
    expect(problems({ PUSH_ADMIN_KEY: 'short' })).to.deep.equal([
      'PUSH_ADMIN_KEY: must be at least 16 characters long',
    ]);
    // A long bad value is cut in the message, not echoed whole.
    expect(problems({ PUSH_PREFIX: 'X'.repeat(500) })[0]?.length).to.be.lessThan(200);
    // Numbers read as JavaScript reads them, as before: spaces around, exponents and hex are integers.
    expect(loadConfig({ PUSH_EDGE_WINDOW: ' 50 ' }).edge.window).to.equal(50);
    expect(loadConfig({ PUSH_EDGE_WINDOW: '1e3' }).edge.window).to.equal(1000);
  });

  it("checks the URLs of the services, the dispatcher's edges, and the store's windows against each other", () => {
    const bad: Array<[string, string, RegExp]> = [
      ['PUSH_NATS_URL', 'not a url', /^PUSH_NATS_URL: expected a nats:\/\/ or tls:\/\/ URL/],
      ['PUSH_NATS_URL', 'nats://a:4222,http://b:4222', /^PUSH_NATS_URL: .*got "http:\/\/b:4222"$/],
      ['PUSH_NATS_URL', 'nats://a:4222,', /^PUSH_NATS_URL: .*got ""$/],
      ['PUSH_REDIS_URL', 'not a url', /^PUSH_REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL/],
      ['PUSH_REDIS_URL', 'http://127.0.0.1:6379', /^PUSH_REDIS_URL: /],
      ['PUSH_DATABASE_URL', 'not a url', /^PUSH_DATABASE_URL: expected a postgres:\/\/ or postgresql:\/\/ URL/],
      ['PUSH_DISPATCHER_EDGES', 'foo,ws://a/ws', /^PUSH_DISPATCHER_EDGES: "foo" is not a ws:\/\/ or wss:\/\/ URL$/],
      ['PUSH_DISPATCHER_EDGES', 'eu=http://x/y', /^PUSH_DISPATCHER_EDGES: "http:\/\/x\/y" is not a ws/],
      ['PUSH_INBOX_MAX_AGE', '9007199254740991', /^PUSH_INBOX_MAX_AGE: must be at most 3153600000/],
    ];
    for (const [name, value, want] of bad) expect(problems({ [name]: value }), `${name}=${value}`).to.match(want);
    expect(problems({ PUSH_DUPLICATE_WINDOW: '3600', PUSH_INBOX_MAX_AGE: '600' })).to.deep.equal([
      'PUSH_DUPLICATE_WINDOW: must not exceed PUSH_INBOX_MAX_AGE (a message is not kept longer)',
    ]);
    expect(problems({ PUSH_JOB_LEASE: '120' })[0]).to.match(/^PUSH_JOB_LEASE: must be below PUSH_DUPLICATE_WINDOW/);
    // What the clients take stays taken.
    const good = loadConfig({
      PUSH_NATS_URL: 'nats://a:4222, tls://b:4222,127.0.0.1:4223',
      PUSH_REDIS_URL: 'rediss://user:pw@r.example:6380/2',
      PUSH_DATABASE_URL: 'postgresql:///push?host=/var/run/postgresql',
      PUSH_DISPATCHER_EDGES: 'eu=wss://eu1.example/ws,ws://127.0.0.1:8081/ws',
      PUSH_JOB_LEASE: '119',
    });
    expect(good.natsUrl).to.equal('nats://a:4222, tls://b:4222,127.0.0.1:4223');
    expect(good.dispatcher.edges).to.deep.equal(['wss://eu1.example/ws', 'ws://127.0.0.1:8081/ws']);
  });

  it('lists every bad variable at once', () => {
    const p = problems({ PUSH_EDGE_PORT: 'abc', PUSH_EDGE_WINDOW: '-1', PUSH_LOG_LEVEL: 'loud' });
    expect(p.map((s) => s.split(':')[0]).sort()).to.deep.equal([
      'PUSH_EDGE_PORT',
      'PUSH_EDGE_WINDOW',
      'PUSH_LOG_LEVEL',
    ]);
  });

  it('refuses ping bounds that contradict each other; the ping cap is independent of the idle timeout (issue 17)', () => {
    expect(problems({ PUSH_EDGE_PING_MIN: '40', PUSH_EDGE_PING_MAX: '30' })).to.deep.equal([
      'PUSH_EDGE_PING_MIN: must not exceed PUSH_EDGE_PING_MAX',
      // No default can lie in an empty range either.
      'PUSH_EDGE_PING_DEFAULT: must lie between PUSH_EDGE_PING_MIN and PUSH_EDGE_PING_MAX',
    ]);
    // /ws follows each connection's agreed interval (HeartbeatWheel); the idle timeout is the Pusher door's.
    expect(loadConfig({ PUSH_EDGE_PING_MAX: '900', PUSH_EDGE_IDLE_TIMEOUT: '30' }).edge.ping.maxSeconds).to.equal(900);
    expect(problems({ PUSH_EDGE_PING_MAX: '901' })[0]).to.match(/^PUSH_EDGE_PING_MAX: /);
  });

  it('gives the center no CORS origins and the dispatcher any by default; reads exact origins (issue 14)', () => {
    const d = loadConfig({});
    expect(d.center.corsOrigins).to.deep.equal([]);
    expect(d.dispatcher.corsOrigins).to.deep.equal(['*']);
    const c = loadConfig({
      PUSH_CORS_ORIGINS: 'https://a.example, http://127.0.0.1:8084',
      PUSH_DISPATCHER_CORS: 'none',
    });
    expect(c.center.corsOrigins).to.deep.equal(['https://a.example', 'http://127.0.0.1:8084']);
    expect(c.dispatcher.corsOrigins).to.deep.equal([]);
  });

  it('names a CORS origin that no browser could send (a path, a trailing slash, no scheme)', () => {
    for (const bad of ['https://a.example/', 'https://a.example/admin', 'a.example', 'https://a.example,nope']) {
      const p = problems({ PUSH_CORS_ORIGINS: bad });
      expect(p, bad).to.have.length(1);
      expect(p[0], bad).to.match(/^PUSH_CORS_ORIGINS: .* is not an origin/);
    }
    expect(problems({ PUSH_DISPATCHER_CORS: 'x' })[0]).to.match(/^PUSH_DISPATCHER_CORS: /);
  });

  it('resolves PUSH_EDGE_WORKERS=0 to the number of cores', () => {
    expect(loadConfig({ PUSH_EDGE_WORKERS: '0' }).edge.workers).to.equal(os.availableParallelism());
  });

  it('reads the per-IP limits and trusted proxies of the edge, and names a bad proxy CIDR (issue 17)', () => {
    const c = loadConfig({
      PUSH_EDGE_MAX_CONNECTIONS_PER_IP: '50',
      PUSH_EDGE_CONNECT_RATE_PER_IP: '5',
      PUSH_EDGE_TRUSTED_PROXIES: ' 10.0.0.0/8, fd00::/8 ,192.0.2.1',
    });
    expect(c.edge.perIp).to.deep.equal({ maxConnections: 50, connectRate: 5 });
    expect(c.edge.trustedProxies).to.deep.equal(['10.0.0.0/8', 'fd00::/8', '192.0.2.1']);
    for (const bad of ['10.0.0.0/33', 'proxy.example', '10.0.0.0/8,::1/129']) {
      const p = problems({ PUSH_EDGE_TRUSTED_PROXIES: bad });
      expect(p, bad).to.have.length(1);
      expect(p[0], bad).to.match(/^PUSH_EDGE_TRUSTED_PROXIES(\[\d\])?: /);
    }
    expect(problems({ PUSH_EDGE_CONNECT_RATE_PER_IP: '-1' })[0]).to.match(/^PUSH_EDGE_CONNECT_RATE_PER_IP/);
  });

  it('reads region labels of the dispatcher edges and names a bad label or a repeated edge (issue 17)', () => {
    const c = loadConfig({ PUSH_DISPATCHER_EDGES: 'eu=ws://a:1/ws, ws://b:2/ws?x=1 ,us-east-1=wss://c/ws' });
    expect(c.dispatcher.edges).to.deep.equal(['ws://a:1/ws', 'ws://b:2/ws?x=1', 'wss://c/ws']);
    expect(c.dispatcher.regions).to.deep.equal({ 'ws://a:1/ws': 'eu', 'wss://c/ws': 'us-east-1' });
    expect(problems({ PUSH_DISPATCHER_EDGES: 'EU=ws://a/ws' })[0]).to.match(/^PUSH_DISPATCHER_EDGES: .*region label/);
    expect(problems({ PUSH_DISPATCHER_EDGES: 'eu=ws://a/ws,us=ws://a/ws' })[0]).to.match(/listed twice/);
  });
});
