/**
 * Apps, their token signing secrets and their API keys (stored hashed).
 * @param {import('knex').Knex} knex
 */
export async function up(knex) {
  await knex.schema.createTable('apps', (t) => {
    t.text('id').primary();
    t.text('name').notNullable();
    t.boolean('disabled').notNullable().defaultTo(false);
    t.jsonb('settings').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.schema.createTable('app_secrets', (t) => {
    t.text('kid').primary();
    t.text('app_id').notNullable().references('apps.id').onDelete('CASCADE');
    t.text('secret').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['app_id', 'created_at']);
  });
  await knex.schema.createTable('api_keys', (t) => {
    t.text('id').primary();
    t.text('app_id').notNullable().references('apps.id').onDelete('CASCADE');
    t.text('hash').notNullable().unique();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('revoked_at', { useTz: true });
    t.index(['app_id']);
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.dropTable('api_keys');
  await knex.schema.dropTable('app_secrets');
  await knex.schema.dropTable('apps');
}
