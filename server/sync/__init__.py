"""Real-time sync: rooms, the gate between accepted and visible, connections, presence,
the room registry and the WebSocket endpoint (y-websocket framing)."""
