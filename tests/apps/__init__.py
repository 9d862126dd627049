"""
Tiny real applications that the tests mount beside the chat (issue 14): a Flask app, a Django
project configured in code, a klein app, a plain twisted.web resource, and a plain HTTP
backend for C{--proxy} (L{tests.apps.backend}).
"""
