/**
 * When a webhook endpoint began to take events, and upstream kinds, when that was after its
 * creation (a change gave it some after it had none): its consumer on that source starts there,
 * not at the creation (which delivered everything stored in between).
 * @param {import('knex').Knex} knex
 */
export async function up(knex) {
  await knex.schema.alterTable('webhook_endpoints', (t) => {
    t.timestamp('events_since', { useTz: true });
    t.timestamp('kinds_since', { useTz: true });
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.alterTable('webhook_endpoints', (t) => {
    t.dropColumn('events_since');
    t.dropColumn('kinds_since');
  });
}
