#!/usr/bin/env python3
"""wsedge session client: hello, one broadcast, then print every frame; follows reconnect hints and
resumes from the last seq it saw when the server keeps history. Stop it with Ctrl-C.
Usage: client.py ws://host:8000/ws/session/<id>/ [origin]   (docs/PROTOCOL.md)"""
import asyncio, json, random, sys
import websockets

async def main(url, origin):
    attempt, epoch, seq, greet = 0, None, 0, True  # epoch/seq: resume after a reconnect (PROTOCOL.md §1.7)
    while True:
        after_ms = None
        try:
            async with websockets.connect(url, origin=origin) as ws:
                attempt = 0
                hello = {"type": "hello", "user_type": "agent", "client_type": "python"}
                if epoch is not None:
                    hello.update(since=seq, epoch=epoch)  # the server replays what we missed
                await ws.send(json.dumps(hello))
                if greet:  # once, not on every reconnect
                    await ws.send(json.dumps({"type": "broadcast", "msg": "hello from python"}))
                    greet = False
                async for text in ws:
                    print(text, flush=True)
                    frame = json.loads(text)
                    if frame["type"] == "connected" and epoch is None:
                        epoch = frame.get("epoch")  # present when the server keeps history
                    elif frame["type"] == "recovery_failed" and "epoch" in frame:
                        epoch, seq = frame["epoch"], frame["seq"]  # history lost: reload state
                    if frame["type"] == "session_message" and "seq" in frame:
                        seq = frame["seq"]
                    if frame["type"] == "reconnect":
                        after_ms = frame["after_ms"]  # already jittered by the server
        except (OSError, websockets.WebSocketException) as e:  # also a 503 from a draining server
            print("disconnected:", e, file=sys.stderr)
            if isinstance(e, websockets.ConnectionClosed) and e.rcvd and e.rcvd.code not in (1001, 1011, 1013):
                raise  # refused (4001, 1008, ...): retrying would fail the same way (PROTOCOL.md §9)
        attempt += 1
        delay = after_ms / 1000 if after_ms is not None else random.uniform(0, min(30, 0.5 * 2 ** attempt))
        await asyncio.sleep(delay)

asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
