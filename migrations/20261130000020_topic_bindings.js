/**
 * Topic bindings (issue 9 item 4): the topics the business bound a user to. Postgres is the
 * record (it survives every restart); the center mirrors each user's set into Redis
 * (`push:bind:<app>:<user>`) for the edges, which read it when a connection opens.
 * @param {import('knex').Knex} knex
 */
export async function up(knex) {
  await knex.schema.createTable('topic_bindings', (t) => {
    t.text('app_id').notNullable().references('apps.id').onDelete('CASCADE');
    t.text('user_id').notNullable();
    t.text('topic').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['app_id', 'user_id', 'topic']);
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.dropTable('topic_bindings');
}
