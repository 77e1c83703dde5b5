from celery import shared_task

from channels_hub.inbound import inbound_event_process


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=5, retry_backoff_max=300, max_retries=8)
def process_inbound_event(event_id: int) -> None:
    inbound_event_process(event_id)
