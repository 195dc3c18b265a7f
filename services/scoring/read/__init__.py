"""The read side of the scoring service: every query the HTTP API answers, as plain functions over an
Engine and the policy that return plain data (dicts, lists, CSV bytes).

    customers   one customer: state and rung history, its view, what the next rung asks
    ladder      the ladder as a whole: customers per rung and tier, the policy's rungs and constants
    lists       keyset-paged customer lists and their CSV form
    flows       customers entering each rung per day, week or month

Nothing here knows about HTTP: the routers (`api`, `workspace`) turn requests into calls and None or a
ValueError into a status code, so a query can be reused by a bench, a tool or a later endpoint.
"""
