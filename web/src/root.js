// Where the server is mounted: '' at the root of its origin, '/collab' when a host application
// mounts draftsync under that prefix (README, "Embedding in your app"). The server writes it
// into each page's <meta name="draftsync-root">; every path the editor builds starts with it.
const meta = document.querySelector('meta[name="draftsync-root"]')
export const ROOT = (meta && meta.getAttribute('content')) || ''
