"""Who is calling: Firebase ID tokens verified off the event loop and cached, the policies a
verified token must also meet, and the short-lived stream tokens of event streams. No HTTP."""
