from celery import shared_task

from channels_hub.inbound import inbound_event_process


@shared_task(acks_late=True, ignore_result=True)
def process_inbound_event(event_id: int) -> None:
    """Process one stored webhook. A failure is recorded on the event, which the periodic relay
    queues again after a pause (no countdown tasks held by the broker)."""
    inbound_event_process(event_id)
