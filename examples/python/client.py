#!/usr/bin/env python3
"""wsedge session client: hello, one broadcast, print frames; follows reconnect hints.
Usage: client.py ws://host:8000/ws/session/<id>/ [origin]   (docs/PROTOCOL.md)"""
import asyncio, json, random, sys
import websockets

async def main(url, origin):
    attempt = 0
    while True:
        after_ms = None
        try:
            async with websockets.connect(url, origin=origin) as ws:
                attempt = 0
                await ws.send(json.dumps({"type": "hello", "user_type": "agent", "client_type": "python"}))
                await ws.send(json.dumps({"type": "broadcast", "msg": "hello from python"}))
                async for text in ws:
                    print(text, flush=True)
                    frame = json.loads(text)
                    if frame["type"] == "reconnect":
                        after_ms = frame["after_ms"]  # already jittered by the server
                    elif frame["type"] == "session_message" and frame["msg"] == "hello from python":
                        return  # our own broadcast came back: done
        except (OSError, websockets.ConnectionClosed) as e:
            print("disconnected:", e, file=sys.stderr)
        attempt += 1
        delay = after_ms / 1000 if after_ms is not None else random.uniform(0, min(30, 0.5 * 2 ** attempt))
        await asyncio.sleep(delay)

asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
