"""What the operator verbs do, against real AWS or the local endpoint (same code path).

One module per job: `target` (where to talk to, with which session), `inject`, `reads`,
`approvals`, `agents`. Every function returns plain JSON-able data; `selfheal.output`
formats it for people.
"""
