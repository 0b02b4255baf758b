"""The NGSI-v2 API (FIWARE Orion compatible) over the same store as NGSI-LD.

One store, two APIs: a v2 write is a change of the stored NGSI-LD Entity, so NGSI-LD
Subscriptions, temporal history and notifications follow v2 writes too. The mapping::

    routes.py       the /v2 route table, Orion's /version member
    entities_api.py /v2/entities, /v2/entities/{id}[/attrs]
    attrs_api.py    /v2/entities/{id}/attrs/{attr}[/value]
    types_api.py    /v2/types[/{type}]
    batch_api.py    /v2/op/update, /v2/op/query, /v2/op/notify
    subscriptions_api.py  /v2/subscriptions[/{id}]
    subscriptions.py      v2 Subscriptions as NGSI-LD Subscriptions
    notifications.py      the notifier, rendering v2 Subscriptions' notifications
    http.py         Fiware-Service, bodies, Accept, Orion error rendering of handlers
    errors.py       Orion's error names and status codes
    entities.py     v2 Entities <-> stored Entities; normalized, keyValues, values, unique
    attributes.py   v2 attributes and metadata <-> stored attribute instances
    geo.py          Simple Location Format and v2 geo-queries as GeoJSON
    simpleq.py      Orion's q and mq as the NGSI-LD q AST
    query.py        v2 selections as EntityQuery; running them
    servicepath.py  Fiware-ServicePath as NGSI-LD scope
    ids.py          the reversible v2 id <-> NGSI-LD id rule
    names.py        the v2 @context
    fields.py       v2 field syntax and reserved names
    changes.py      v2 write semantics as store changes

See docs/howto/ngsi-v2.md for the mapping rules and their edge cases.
"""

from cityos.v2.notifications import Notifier
from cityos.v2.routes import orion_version, routes

__all__ = ["Notifier", "orion_version", "routes"]
