import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import { generateWebhookSecret, signWebhook } from '@push/apps';

describe('webhook signatures (Standard Webhooks)', () => {
  const body = JSON.stringify({ app: 'a', endpoint: 'wh_x', source: 'events', items: [{ id: 'evt_1' }] });
  // Read when a test runs, not when the file loads: mocha runs test/unit after test/e2e, minutes
  // later in a full run, past the package's 5 min tolerance.
  const now = (): number => Math.floor(Date.now() / 1000);

  it('verify with the standardwebhooks package, with either secret during a rotation', () => {
    const [newer, older] = [generateWebhookSecret(), generateWebhookSecret()];
    expect(newer).to.match(/^whsec_[A-Za-z0-9+/]{32}$/);
    const h = signWebhook([newer, older], 'evt_1', now(), body);
    expect(h['webhook-signature'].split(' ')).to.have.length(2);
    for (const s of [newer, older]) expect(new Webhook(s).verify(body, { ...h })).to.deep.equal(JSON.parse(body));
  });

  it('fail for another body, id or secret', () => {
    const secret = generateWebhookSecret();
    const h = signWebhook([secret], 'evt_1', now(), body);
    expect(() => new Webhook(secret).verify(`${body} `, { ...h })).to.throw();
    expect(() => new Webhook(secret).verify(body, { ...h, 'webhook-id': 'evt_2' })).to.throw();
    expect(() => new Webhook(generateWebhookSecret()).verify(body, { ...h })).to.throw();
  });
});
