/**
 * Webhook endpoints of apps (issue 10): where the coordinator POSTs an app's events and upstream,
 * which of them, and the signing secrets (newest first; the newest two sign).
 * @param {import('knex').Knex} knex
 */
export async function up(knex) {
  await knex.schema.createTable('webhook_endpoints', (t) => {
    t.text('id').primary();
    t.text('app_id').notNullable().references('apps.id').onDelete('CASCADE');
    t.text('url').notNullable();
    t.jsonb('events').notNullable();
    t.jsonb('kinds').notNullable();
    t.boolean('disabled').notNullable().defaultTo(false);
    t.text('description').notNullable().defaultTo('');
    t.jsonb('secrets').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['app_id']);
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.dropTable('webhook_endpoints');
}
