"""Deletions of stored objects that survive storage failures (recorded, then retried).

Decision (issue 13): this sits in `objects`, below the domains, not among the jobs. Every
domain DELETE must record its objects in the transaction that removes the rows (`schedule`)
and then remove them (`run_now`); tombstones keep deleted ids from coming back. Those are
primitives of the object lifecycle the domains build on, like the key layout and claims, so
they move down rather than each route orchestrating a job. The job part is the retry: the
janitor calls `execute` for records left behind by a storage outage."""
