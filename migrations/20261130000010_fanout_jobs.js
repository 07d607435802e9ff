/**
 * Fan-out jobs: a message for a list of users that the centers write into each user's inbox at
 * the app's fan-out rate. Users are stored in chunks (an array per row, not a row per user), so a
 * million-user job is about a hundred rows. `done` is the checkpoint: the first `done` users (in
 * chunk order) are handled and counted; a center that resumes the job starts there. `locked_by`
 * and `lease_until` are the claim of the center running it (renewed while it runs; another
 * center takes the job over once the lease lapses).
 * @param {import('knex').Knex} knex
 */
export async function up(knex) {
  await knex.schema.createTable('fanout_jobs', (t) => {
    t.text('id').primary();
    t.text('app_id').notNullable().references('apps.id').onDelete('CASCADE');
    t.text('state').notNullable();
    t.binary('payload').notNullable();
    t.boolean('binary').notNullable();
    t.double('ttl_seconds').notNullable();
    t.integer('total').notNullable().defaultTo(0);
    t.integer('skipped').notNullable().defaultTo(0);
    t.integer('stored').notNullable().defaultTo(0);
    t.integer('chunks').notNullable().defaultTo(0);
    t.integer('done').notNullable().defaultTo(0);
    t.integer('written').notNullable().defaultTo(0);
    t.integer('failed').notNullable().defaultTo(0);
    t.boolean('dedupe').notNullable().defaultTo(false);
    t.text('locked_by');
    t.timestamp('lease_until', { useTz: true });
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('started_at', { useTz: true });
    t.timestamp('finished_at', { useTz: true });
    t.index(['app_id', 'created_at']);
    t.index(['state', 'created_at']);
  });
  await knex.raw(
    "ALTER TABLE fanout_jobs ADD CONSTRAINT fanout_jobs_state CHECK (state IN ('open', 'queued', 'running', 'completed', 'cancelled'))",
  );
  await knex.schema.createTable('fanout_job_users', (t) => {
    t.text('job_id').notNullable().references('fanout_jobs.id').onDelete('CASCADE');
    t.integer('chunk').notNullable();
    t.specificType('users', 'text[]').notNullable();
    t.primary(['job_id', 'chunk']);
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.dropTable('fanout_job_users');
  await knex.schema.dropTable('fanout_jobs');
}
