"""Torale's tools for AI assistants, over the Model Context Protocol.

The tools (`tools.py`) are API operations; their descriptions and input schemas are read from
the API's OpenAPI document, so they are written once, in the routes and schemas. One MCP
server (`server.py`) serves them with one of two backends:

- `local.py`: inside `torale serve`, at `/mcp` (Streamable HTTP), with the API's
  authentication and rate limits, calling the same actions the API's routes call;
- `remote.py`: `torale mcp`, for clients that start a command (stdio), talking to a Torale
  server through the SDK.

The MCP library (`mcp`) is imported only when a tool is first asked for.
"""
