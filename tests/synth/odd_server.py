"""A deliberately broken stdio MCP server for the bad-input tests: `python odd_server.py MODE`.

crash       exits at once with status 3, before answering anything
hang        reads requests and never answers
malformed   a valid server whose second tool's input schema is not valid JSON Schema
            (`properties.when.type` is "datetime"), beside a good tool
"""

import json
import sys
import time

TOOLS = [
    {
        "name": "echo",
        "description": "Return the text.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
    {
        "name": "schedule",
        "description": "Schedule something.",
        "inputSchema": {"type": "object", "properties": {"when": {"type": "datetime"}}},
    },
]


def answer(request_id, result):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}) + "\n")
    sys.stdout.flush()


def main(mode: str) -> None:
    if mode == "crash":
        sys.exit(3)
    for line in sys.stdin:
        if mode == "hang":
            time.sleep(3600)
        message = json.loads(line)
        method = message.get("method")
        if method == "initialize":
            answer(
                message["id"],
                {
                    "protocolVersion": message["params"]["protocolVersion"],
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "odd", "version": "0.0.1"},
                },
            )
        elif method == "tools/list":
            answer(message["id"], {"tools": TOOLS})
        elif method == "tools/call":
            text = message["params"]["arguments"].get("text", "")
            answer(message["id"], {"content": [{"type": "text", "text": text}], "isError": False})
        elif "id" in message:
            answer(message["id"], {})


if __name__ == "__main__":
    main(sys.argv[1])
