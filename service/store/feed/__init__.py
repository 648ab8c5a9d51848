"""Job changes pushed to event-stream subscribers: ``follow`` reads MongoDB (change streams, or
polling without a replica set), ``fanout`` hands each change to the clients following its job."""

from service.store.feed.fanout import Closed, Event, Kind, Subscription
from service.store.feed.follow import JobFeed

__all__ = ["Closed", "Event", "JobFeed", "Kind", "Subscription"]
