"""Read Prefect events back from the API the tests talk to."""

import time


def wait_for_events(event: str, resource_id: str, count: int, timeout: float = 60.0) -> list:
    """The events named `event` about `resource_id`, oldest first, once `count` have arrived.

    Events reach the API through a background worker and are stored in batches, so they are
    read back by polling; fewer than `count` after `timeout` seconds are returned as they are.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            # A new filter each time: its time window ends when it is built.
            page = client.read_events(
                EventFilter(event=EventNameFilter(name=[event]), resource=EventResourceFilter(id=[resource_id])),
                limit=50,  # the server's maximum page (the client's default of 100 is refused)
            )
        events = sorted(page.events, key=lambda e: e.occurred)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.5)
