//! PostgreSQL wire format (protocol 3.0), pure: bytes in, typed views or bytes out, no sockets.
