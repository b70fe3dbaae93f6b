"""gunicorn settings every deployment of the platform shares (gunicorn reads this file from the working folder).

Command-line flags (`make serve`: bind, workers, threads, timeout) are per deployment; what is here is the
platform's own.
"""

# The longest request line gunicorn accepts (its maximum; the default is 4094). A query string of cursors
# and filters percent-encoded from non-ASCII text can pass 4 KiB: such a request is answered by the
# platform in its surface's shape (a 400 naming the field), not refused by the server with a bare 414.
limit_request_line = 8190
