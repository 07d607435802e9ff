import { expect } from 'chai';
import { Subjects, decodeToken, encodeToken } from '@push/protocol';

/**
 * What a JetStream RePublish does with `src` and `dest`: if `subject` matches the source pattern,
 * `{{wildcard(n)}}` in the destination is replaced by the token the n-th `*` matched.
 */
function republish(src: string, dest: string, subject: string): string | undefined {
  const pattern = src.split('.');
  const tokens = subject.split('.');
  if (pattern.length !== tokens.length) return undefined;
  const wild: string[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    const t = tokens[i] ?? '';
    if (p === '*') wild.push(t);
    else if (p !== t) return undefined;
  }
  return dest.replace(/\{\{wildcard\((\d+)\)\}\}/g, (_, n: string) => wild[Number(n) - 1] ?? '<missing>');
}

describe('subjects', () => {
  it('uses "push" as the default prefix', () => {
    const s = new Subjects();
    expect(s.prefix).to.equal('push');
    expect(s.inbox('app1', 'alice', 'b')).to.equal('push.inbox.app1.alice.b');
  });

  it('builds the documented names for a custom prefix', () => {
    const s = new Subjects('t1');
    expect(s.inboxStream('app1')).to.equal('T1_INBOX-app1');
    expect(s.inboxStream('my.app')).to.equal(`T1_INBOX-~${Buffer.from('my.app').toString('base64url')}`);
    expect(s.inboxOfApp('app1')).to.equal('t1.inbox.app1.*.*');
    expect(s.legacyInboxOfApp('app1')).to.equal('t1.inbox.app1.*');
    expect(s.appsBucket).to.equal('t1_apps');
    expect(s.inboxAll).to.equal('t1.inbox.>');
    expect(s.inbox('app1', 'alice', 'b')).to.equal('t1.inbox.app1.alice.b');
    expect(s.inbox('app1', 'alice', 'c')).to.equal('t1.inbox.app1.alice.c');
    expect(s.inboxOfUser('app1', 'alice')).to.equal('t1.inbox.app1.alice.*');
    expect(s.liveUser('app1', 'alice')).to.equal('t1.live.u.app1.alice');
    expect(s.control('app1', 'alice')).to.equal('t1.ctl.app1.alice');
    expect(s.api('push')).to.equal('t1.api.push');
    expect(s.api('user')).to.equal('t1.api.user');
    expect(s.apiQueue).to.equal('t1-center');
    expect(s.appKey('app1')).to.equal('app1');
    expect(s.appKey('my.app *')).to.equal(`=${Buffer.from('my.app *').toString('base64url')}`);
    // Valid NATS KV keys: [-/=.\w]+
    for (const id of ['a', 'my.app', '~x', '😀', 'a b', '-']) expect(s.appKey(id), id).to.match(/^[-/=.\w]+$/);
    expect(s.presenceKey('app1', 'alice')).to.equal('t1:presence:app1:alice');
    expect(s.edgeAliveKey('edge-7')).to.equal('t1:edge:edge-7');
    expect(s.apiMessageId('app1', 'alice', 'm-1')).to.equal('api.app1.alice.m-1');
    expect(s.clientMessageId('app1', 'alice', 'm-1')).to.equal('c2c.app1.alice.m-1');
  });

  it("declares each app's inbox stream RePublish source and destination", () => {
    const s = new Subjects('t1');
    expect(s.inboxOfApp('app1')).to.equal('t1.inbox.app1.*.*');
    expect(s.inboxRepublishDest('app1')).to.equal('t1.live.u.app1.{{wildcard(1)}}');
  });

  it('never gives two apps, or two prefixes, the same stream name', () => {
    const names = new Set<string>();
    const cases: Array<[string, string]> = [
      ['push', 'INBOX-x'],
      ['push_inbox', 'x'],
      ['push', 'a'],
      ['push', '~YQ'],
      ['push', 'a.b'],
      ['pus', 'h_INBOX-a'],
    ];
    for (const [prefix, app] of cases) names.add(new Subjects(prefix).inboxStream(app));
    expect(names.size).to.equal(cases.length);
    for (const n of names) expect(n).to.match(/^[A-Z0-9_]+_INBOX-[A-Za-z0-9_~-]+$/);
  });

  it('RePublish maps every inbox subject onto the matching live subject, for any ids', () => {
    const s = new Subjects('t1');
    const ids = ['alice', 'a.b', '*', '>', 'x y', '😀', '~abc', '-'];
    for (const app of ['app1', 'my.app', '*']) {
      for (const user of ids) {
        for (const kind of ['b', 'c'] as const) {
          const live = republish(s.inboxOfApp(app), s.inboxRepublishDest(app), s.inbox(app, user, kind));
          expect(live, `${app}/${user}/${kind}`).to.equal(s.liveUser(app, user));
        }
      }
    }
  });

  it('the inbox stream captures every inbox subject and nothing of the live ones', () => {
    const s = new Subjects('t1');
    const all = s.inboxAll.slice(0, -1); // 't1.inbox.'
    expect(s.inbox('my.app', 'a.b.>', 'c').startsWith(all)).to.equal(true);
    expect(s.liveUser('my.app', 'a').startsWith(all)).to.equal(false);
  });

  it('ids with subject syntax stay in their own token and cannot reach another user', () => {
    const s = new Subjects();
    const subjects = [
      s.inbox('app1', 'a.b', 'b'),
      s.inbox('app1.a', 'b', 'b'),
      s.inbox('app1', '*', 'b'),
      s.inbox('app1', '>', 'c'),
      s.inbox('app1', 'a b', 'c'),
      s.liveUser('app1', '*'),
      s.control('app1', '>'),
    ];
    for (const subject of subjects) {
      const tokens = subject.split('.');
      expect(tokens, subject).to.have.length(subject.startsWith('push.ctl.') ? 4 : 5);
      for (const t of tokens) expect(t, subject).to.match(/^[A-Za-z0-9_~-]+$/);
    }
    // Distinct (app, user) pairs that join to the same text must not share an inbox.
    expect(s.inbox('app1', 'a.b', 'b')).not.to.equal(s.inbox('app1.a', 'b', 'b'));
    // The user filter covers exactly that user's two subjects.
    expect(s.inboxOfUser('app1', 'a.b')).to.equal(s.inbox('app1', 'a.b', 'b').slice(0, -1) + '*');
    expect(new Set(subjects).size).to.equal(subjects.length);
  });

  it('encodes ids the same way everywhere, so they can be read back', () => {
    const s = new Subjects();
    const [, , app, user] = s.inbox('my app', 'bob.smith', 'b').split('.');
    expect(decodeToken(app ?? '')).to.equal('my app');
    expect(decodeToken(user ?? '')).to.equal('bob.smith');
    expect(s.appKey('my app')).to.equal(`=${encodeToken('my app').slice(1)}`);
    expect(s.presenceKey('a:b', 'c')).to.equal(`push:presence:${encodeToken('a:b')}:c`);
    expect(s.apiMessageId('a', 'b', 'x.y')).to.equal(`api.a.b.${encodeToken('x.y')}`);
  });

  it('refuses a prefix that would not be one lowercase token', () => {
    for (const bad of ['', 'Push', '1push', 'pu.sh', 'push*', 'a b', 'push-x', 'p'.repeat(33)]) {
      expect(() => new Subjects(bad), JSON.stringify(bad)).to.throw(/subject prefix must match/);
    }
    expect(new Subjects('p'.repeat(32)).prefix).to.have.length(32);
    expect(new Subjects('a_1').inboxStream('x')).to.equal('A_1_INBOX-x');
  });
});

describe('Subjects.parseControl', () => {
  const s = new Subjects('t1');

  it('reads back the ids of a subject that control() built, encoded or not', () => {
    expect(s.parseControl(s.control('app1', 'alice'))).to.deep.equal({ app: 'app1', user: 'alice' });
    for (const [app, user] of [
      ['my.app', 'bob.smith'],
      ['a', '>'],
      ['ü', 'user with spaces'],
      ['x', '*'],
    ] as const) {
      expect(s.parseControl(s.control(app, user)), `${app}/${user}`).to.deep.equal({ app, user });
    }
  });

  it('refuses another prefix or another kind of subject', () => {
    expect(s.parseControl(new Subjects('t2').control('app1', 'alice'))).to.equal(undefined);
    expect(s.parseControl(new Subjects().control('app1', 'alice'))).to.equal(undefined);
    expect(s.parseControl(s.liveUser('app1', 'alice'))).to.equal(undefined);
    expect(s.parseControl(s.inbox('app1', 'alice', 'b'))).to.equal(undefined);
  });

  it('refuses missing, empty or extra tokens', () => {
    for (const bad of ['t1.ctl.app1', 't1.ctl.app1.alice.x', 't1.ctl..alice', 't1.ctl.app1.', 't1.ctl', '']) {
      expect(s.parseControl(bad), bad).to.equal(undefined);
    }
  });

  it('refuses tokens that are not the one encoding of an id', () => {
    const encodedSafe = `~${Buffer.from('alice').toString('base64url')}`; // alice is sent verbatim
    const badUtf8 = `~${Buffer.from([0xff, 0xfe]).toString('base64url')}`;
    for (const user of ['~', '~a+b', '~a=b', encodedSafe, badUtf8, '*', '>', 'a b']) {
      expect(s.parseControl(`t1.ctl.app1.${user}`), user).to.equal(undefined);
    }
  });
});
