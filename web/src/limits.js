// The server's message limit (`limits.maxMessageBytes` of GET /api/schema; a bigger WebSocket
// message is closed with 1009). A change is one Yjs update in one message: the page refuses a
// paste or a value that would not fit, before it enters the document, so nothing is sent and
// the rest of the work goes on. The margin covers the message's framing and the update's
// header (ids, lengths, the field's name).
const MARGIN_BYTES = 4096
const encoder = new TextEncoder()

export function sizeGuard ({ maxMessageBytes, onRefused }) {
  const limit = Number.isFinite(maxMessageBytes) && maxMessageBytes > MARGIN_BYTES
    ? maxMessageBytes - MARGIN_BYTES
    : Infinity
  return {
    limit,
    /** Whether `text` may enter field `field`; if not, say so (onRefused) and answer false. */
    fits: (field, text) => {
      if (limit === Infinity || text.length * 3 <= limit) return true
      const bytes = encoder.encode(text).length
      if (bytes <= limit) return true
      onRefused({ field, bytes, limit })
      return false
    }
  }
}

/** A size for people: MB from 1 MB up, KB below (a 64 KB limit is not "0.1 MB"). */
export function sizeText (bytes) {
  if (bytes < 1024 * 1024) return `${Math.ceil(bytes / 1024)} KB`
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`
}
