// Verifies one captured webhook delivery with Seam's official verifier (@seamapi/webhook).
//
//   node verify.mjs delivery.json
//
// delivery.json: {"secret": "whsec_…", "payload": "<raw body>", "headers": {"webhook-id": …}}
// Exit 0 and print the event type when `new SeamWebhook(secret).verify(payload, headers)`
// accepts it; exit 1 with the reason when it does not; exit 2 on bad usage.
import { readFile } from 'node:fs/promises'

import { SeamWebhook } from '@seamapi/webhook'

const path = process.argv[2]
if (!path) {
  console.error('usage: node verify.mjs delivery.json')
  process.exit(2)
}

const { secret, payload, headers } = JSON.parse(await readFile(path, 'utf8'))

try {
  const event = new SeamWebhook(secret).verify(payload, headers)
  console.log(`verified ${event.event_type} ${event.event_id}`)
  process.exit(0)
} catch (error) {
  console.error(`rejected: ${error?.name ?? 'Error'}: ${error?.message ?? error}`)
  process.exit(1)
}
