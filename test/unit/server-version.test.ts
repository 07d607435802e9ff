import { expect } from 'chai';
import {
  MIN_NATS_SERVER_VERSION,
  NatsServerTooOldError,
  compareServerVersions,
  isServerVersionAtLeast,
  parseServerVersion,
} from '@push/nats';

describe('nats-server version check', function () {
  it('needs 2.11.0', function () {
    expect(MIN_NATS_SERVER_VERSION).to.equal('2.11.0');
  });

  it('refuses 2.9.10 (Debian 12) and the last 2.10', function () {
    expect(isServerVersionAtLeast('2.9.10')).to.equal(false);
    expect(isServerVersionAtLeast('2.10.99')).to.equal(false);
    expect(isServerVersionAtLeast('1.99.99')).to.equal(false);
  });

  it('accepts 2.11.0 and newer, with or without a leading v', function () {
    expect(isServerVersionAtLeast('2.11.0')).to.equal(true);
    expect(isServerVersionAtLeast('2.15.1')).to.equal(true);
    expect(isServerVersionAtLeast('v2.12.3')).to.equal(true);
    expect(isServerVersionAtLeast('3.0.0')).to.equal(true);
    expect(isServerVersionAtLeast('2.11.0+build.7')).to.equal(true);
  });

  it('compares numerically, not as text (2.9 < 2.10 < 2.11)', function () {
    expect(compareServerVersions('2.9.10', '2.11.0')).to.be.below(0);
    expect(compareServerVersions('2.10.0', '2.9.10')).to.be.above(0);
    expect(compareServerVersions('2.11.0', '2.11.0')).to.equal(0);
    expect(compareServerVersions('2.11.10', '2.11.9')).to.be.above(0);
  });

  it('ranks a prerelease below its release and above the release before', function () {
    expect(isServerVersionAtLeast('2.12.0-RC.1')).to.equal(true);
    expect(isServerVersionAtLeast('2.11.0-RC.1')).to.equal(false);
    expect(compareServerVersions('2.12.0-RC.1', '2.12.0')).to.be.below(0);
    expect(compareServerVersions('2.12.0-RC.2', '2.12.0-RC.10')).to.be.below(0);
    expect(compareServerVersions('2.12.0-beta', '2.12.0-RC.1')).to.be.above(0); // ASCII: 'R' < 'b'
    expect(compareServerVersions('2.12.0-RC', '2.12.0-RC.1')).to.be.below(0);
    expect(compareServerVersions('2.12.0-1', '2.12.0-RC')).to.be.below(0); // numeric ids rank lower
  });

  it('treats a missing or garbage version as too old', function () {
    for (const v of [undefined, '', 'garbage', '2.11', '2.11.x', '2..11.0', 'nats-server: v2.15.1', ' ', '2.11.0-']) {
      expect(isServerVersionAtLeast(v), String(v)).to.equal(false);
    }
    expect(parseServerVersion('garbage')).to.equal(undefined);
    expect(() => compareServerVersions('garbage', '2.11.0')).to.throw(/not a version/);
  });

  it('says in its error what was found, what is needed and how to get it', function () {
    const err = new NatsServerTooOldError('2.9.10', '2.11.0', 'nats://127.0.0.1:4222');
    expect(err.code).to.equal('nats_server_too_old');
    expect(err.message).to.contain('2.9.10').and.contain('2.11.0').and.contain('nats://127.0.0.1:4222');
    expect(err.message).to.contain('scripts/nats-server.sh').and.contain('nats:2.11-alpine');
  });
});
