"""Rendering, in capped child processes: one page (``page``), the render process and its protocol
(``process``), and the pool the worker's jobs share (``pool``)."""
