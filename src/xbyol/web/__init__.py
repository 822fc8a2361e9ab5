"""Local web explorer of a run (``xbyol serve``)."""

from xbyol.web.app import LOCAL_HOSTS, Explorer, create_app

__all__ = ["LOCAL_HOSTS", "Explorer", "create_app"]
