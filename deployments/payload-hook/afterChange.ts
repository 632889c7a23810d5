// Payload CMS collection hook: tell Prefect that a collection changed, so the `on-change`
// deployment loads it (debounced) and rebuilds the dbt models downstream of it.
//
// Two targets, chosen by environment variables of the Payload server:
//   PREFECT_WEBHOOK_URL  Prefect Cloud webhook (Cloud only), e.g.
//                        https://api.prefect.cloud/hooks/AbCdEf...  with the webhook template
//                        in deployments/payload-hook/README.md
//   PREFECT_RELAY_URL    self-hosted Prefect server: the relay from this repository,
//                        `python -m flows.orchestration.relay serve`, e.g.
//                        http://relay.internal:8787/payload/changed  (+ PREFECT_RELAY_TOKEN)
//
// Usage (payload.config.ts):
//   import { notifyPrefect, notifyPrefectOnDelete } from './hooks/afterChange'
//   collections: [{ slug: 'orders', hooks: { afterChange: [notifyPrefect],
//                                             afterDelete: [notifyPrefectOnDelete] }, ... }]
//
// The hook never blocks or fails the editor's save: the request is fire-and-forget with a short
// timeout, and errors are only logged.
import type { CollectionAfterChangeHook, CollectionAfterDeleteHook } from 'payload'

type Operation = 'create' | 'update' | 'delete'

const TIMEOUT_MS = 3000

async function postChange(collection: string, operation: Operation, id: string | number) {
  const webhookUrl = process.env.PREFECT_WEBHOOK_URL
  const relayUrl = process.env.PREFECT_RELAY_URL
  const url = webhookUrl || relayUrl
  if (!url) return
  const headers: Record<string, string> = { 'Content-Type': 'application/json' }
  if (!webhookUrl && process.env.PREFECT_RELAY_TOKEN) {
    headers['X-Relay-Token'] = process.env.PREFECT_RELAY_TOKEN
  }
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS)
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ collection, operation, id: String(id) }),
      signal: controller.signal,
    })
    if (!response.ok) {
      console.warn(`prefect notify: ${collection} ${operation} -> HTTP ${response.status}`)
    }
  } catch (error) {
    console.warn(`prefect notify: ${collection} ${operation} failed: ${String(error)}`)
  } finally {
    clearTimeout(timer)
  }
}

export const notifyPrefect: CollectionAfterChangeHook = ({ collection, doc, operation }) => {
  // Not awaited: the save returns at once; the pipeline picks the change up asynchronously.
  void postChange(collection.slug, operation as Operation, doc.id)
  return doc
}

export const notifyPrefectOnDelete: CollectionAfterDeleteHook = ({ collection, id, doc }) => {
  void postChange(collection.slug, 'delete', id)
  return doc
}
