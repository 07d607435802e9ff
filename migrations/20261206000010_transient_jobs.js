/**
 * Transient fan-out jobs (issue 17): a job that sends its message live to the users' connections
 * online at that moment and stores nothing.
 * @param {import('knex').Knex} knex
 */
export async function up(knex) {
  await knex.schema.alterTable('fanout_jobs', (t) => {
    t.boolean('transient').notNullable().defaultTo(false);
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.alterTable('fanout_jobs', (t) => {
    t.dropColumn('transient');
  });
}
