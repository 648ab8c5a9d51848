"""Helpers the tests share: PDFs made in the test, servers (SeaweedFS, nginx-fronted granian,
Google's certificate endpoint, the Firebase Auth Emulator), an SSE reader, render hooks."""
