"""A local SMTP server that accepts every message and records it, for tests/channels.rs.

Usage: python smtp_sink.py OUTPUT_FILE

It listens on 127.0.0.1 on a port the OS picks, prints that port on its first
stdout line once it accepts connections, and appends one JSON object per message
to OUTPUT_FILE:

    {"mail_from": ..., "rcpt_tos": [...], "from": ..., "to": ..., "subject": ...,
     "content_type": ..., "body": ...}

Headers and body are decoded here (RFC 2047 words, quoted-printable, base64), so
the Rust test asserts on what a mail client would show, whatever transfer
encoding the sender chose.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session


class Recorder:
    def __init__(self, output: str) -> None:
        self.output = output

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body_part = message.get_body(preferencelist=("plain",))
        # SMTP lines end in CRLF; the test compares with the text as written.
        body = body_part.get_content().replace("\r\n", "\n") if body_part is not None else ""
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["from"]),
            "to": str(message["to"]),
            "subject": str(message["subject"]),
            "content_type": message.get_content_type(),
            "body": body,
        }
        # One write per line, flushed at once: the test reads the file while we run.
        with open(self.output, "a", encoding="utf-8") as output:
            output.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


async def main(output: str) -> None:
    recorder = Recorder(output)
    loop = asyncio.get_running_loop()
    # Port 0 and printing the bound port avoids racing another process for a
    # "free" port between picking it and listening on it.
    server = await loop.create_server(lambda: SMTP(recorder), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
