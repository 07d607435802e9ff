/**
 * Webhook endpoints choose their body format (issue 18): `native` (Standard Webhooks, every item
 * as stored) or `pusher` (Pusher's webhook body, signed with X-Pusher-Key/X-Pusher-Signature).
 * @param {import('knex').Knex} knex
 */
export async function up(knex) {
  await knex.schema.alterTable('webhook_endpoints', (t) => {
    t.text('format').notNullable().defaultTo('native');
  });
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.schema.alterTable('webhook_endpoints', (t) => {
    t.dropColumn('format');
  });
}
