// business-consumer.mjs: read one app's upstream and events straight from NATS.
import { connect } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';

/**
 * Consumes `PUSH_UP-<app>` (client `up` frames) and `PUSH_EVENTS-<app>` (events) with a durable
 * consumer of your own on each: what you have not acked comes again after a restart. `app` is
 * the app id as it appears in subjects (ids of A-Z a-z 0-9 _ - are used verbatim).
 */
export async function consume({ servers, prefix = 'push', app, durable, kinds = ['>'], onUpstream, onEvent }) {
  const nc = await connect({ servers });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const P = prefix.toUpperCase();
  const subscriptions = [];
  const loops = [];
  for (const [stream, filters, handle] of [
    [`${P}_UP-${app}`, kinds.map((k) => `${prefix}.up.${app}.${k}`), onUpstream],
    [`${P}_EVENTS-${app}`, [`${prefix}.evt.${app}.>`], onEvent],
  ]) {
    // Creating a durable consumer with the same config again is a no-op.
    await jsm.consumers.add(stream, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      filter_subjects: filters,
      max_ack_pending: 1000,
    });
    const messages = await (await js.consumers.get(stream, durable)).consume();
    subscriptions.push(messages);
    loops.push(
      (async () => {
        for await (const m of messages) {
          // Nats-Msg-Id is the record's id: dedupe on it if you may see a message twice.
          await handle(m.json(), m.headers?.get('Nats-Msg-Id'));
          m.ack();
        }
      })(),
    );
  }
  return {
    async stop() {
      // Stop pulling, let the handlers finish what they hold, then close the connection.
      await Promise.all(subscriptions.map((m) => m.close()));
      await Promise.allSettled(loops);
      await nc.drain();
    },
  };
}
