import { expect } from 'chai';
import { DATABASE_RETRY_AFTER_SECONDS, databaseUnavailable, isDatabaseUnavailable } from '@push/db';
import { PushError } from '@push/protocol';

/** Which database failures mean "Postgres is not there" (503 database_unavailable), and which not. */
describe('database errors', function () {
  const coded = (message: string, code: string) => Object.assign(new Error(message), { code });

  it('takes unreachable, restarting or vanished servers and the pool timeout for unavailability', function () {
    const cases = [
      coded('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'),
      coded('read ECONNRESET', 'ECONNRESET'),
      new Error('Connection terminated unexpectedly'),
      new Error('Connection terminated due to connection timeout'),
      Object.assign(new Error('Knex: Timeout acquiring a connection.'), { name: 'KnexTimeoutError' }),
      coded('the database system is starting up', '57P03'),
      coded('terminating connection due to administrator command', '57P01'),
      coded('connection failure', '08006'),
      coded('database "x" does not exist', '3D000'),
      new Error('insert failed', { cause: coded('connect ECONNREFUSED', 'ECONNREFUSED') }),
    ];
    for (const err of cases) expect(isDatabaseUnavailable(err), err.message).to.equal(true);
  });

  it('leaves the request’s own failures alone', function () {
    const cases = [
      coded('duplicate key value violates unique constraint', '23505'),
      coded('syntax error', '42601'),
      new PushError('app_not_found'),
      new Error('something else'),
    ];
    for (const err of cases) expect(isDatabaseUnavailable(err), err.message).to.equal(false);
    expect(databaseUnavailable(new PushError('app_not_found'))).to.equal(undefined);
  });

  it('answers 503 database_unavailable with a retry hint, the cause kept', function () {
    const cause = coded('connect ECONNREFUSED', 'ECONNREFUSED');
    const e = databaseUnavailable(cause);
    expect(e?.code).to.equal('database_unavailable');
    expect(e?.status).to.equal(503);
    expect(e?.retryAfter).to.equal(DATABASE_RETRY_AFTER_SECONDS);
    expect(e?.cause).to.equal(cause);
  });
});
