/**
 * When a fan-out job was queued: at its creation, or at its start for an open job. An app's jobs
 * run in that order (docs/api.md "Fan-out jobs"); ordering by creation ran an open job started
 * late before jobs queued while it was open.
 * @param {import('knex').Knex} knex
 */
export async function up(knex) {
  await knex.schema.alterTable('fanout_jobs', (t) => {
    t.timestamp('queued_at', { useTz: true });
  });
  // Jobs past `open` were queued at creation or at a start not recorded; creation is the best known.
  await knex('fanout_jobs')
    .whereNot({ state: 'open' })
    .update({ queued_at: knex.ref('created_at') });
  await knex.schema.alterTable('fanout_jobs', (t) => {
    t.index(['state', 'queued_at']);
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.alterTable('fanout_jobs', (t) => {
    t.dropIndex(['state', 'queued_at']);
    t.dropColumn('queued_at');
  });
}
