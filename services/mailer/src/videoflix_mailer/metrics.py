"""The mailer's Prometheus metrics (its consumer's health port serves them).

- `videoflix_email_deliveries_total{subject, outcome}`: deliveries of mail events by what
  became of them: `sent`, `duplicate` (sent before: acknowledged again), `retried` (SMTP or
  Redis unreachable, a 4xx, another instance busy: tried again later), `dead_lettered`
  (given up on and kept as a dead letter), `ignored` (an auth event that is no email);
- `videoflix_email_dead_letters`: dead letters stored now, all instances together (read
  from Redis at every scrape; back to 0 once replayed or deleted).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from videoflix_mailer.emails import TEMPLATE_BY_SUBJECT

SENT = "sent"
DUPLICATE = "duplicate"
RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
IGNORED = "ignored"

EMAIL_DELIVERIES = Counter(
    "videoflix_email_deliveries_total",
    "Deliveries of mail events by what became of them",
    ["subject", "outcome"],
)
DEAD_LETTERS = Gauge(
    "videoflix_email_dead_letters",
    "Emails given up on and kept as dead letters, not yet replayed or deleted",
    multiprocess_mode="mostrecent",  # one figure in Redis, whichever process reads it
)

# Every series exists from the start, so rates and alerts see a 0 rather than nothing.
for _subject in TEMPLATE_BY_SUBJECT:
    for _outcome in (SENT, DUPLICATE, RETRIED, DEAD_LETTERED):
        EMAIL_DELIVERIES.labels(_subject, _outcome)
