"""Offline push: the bridge as its users' XEP-0357 *app server*, delivering to webhooks.

The user's own server decides when to notify (a message arrives while none of her clients
is online) and publishes a summary to the push service, the MUC Light component's JID;
the bridge turns each publish into a signed HTTPS POST to the webhook it was enabled for.
One concern per module:

``urls``       which webhook URLs may be registered, and which addresses delivered to (SSRF)
``signing``    the webhook secret and the ``X-Bridge-Signature`` HMAC
``backoff``    the retry schedule (exponential, jittered, 24 h)
``payload``    the summary form and the JSON a webhook gets
``client``     the HTTP POST: timeouts, no redirects, per-host concurrency, address check
``worker``     the durable queue's drain (claims with leases, retries, 410 Gone, metrics)
``appserver``  the component handler that accepts the server's pubsub publish
``registry``   registering and removing webhooks (REST side), enabling push on the server
"""
