//! Policy: turns findings into decisions (allow, warn, rewrite, reject) per mode and profile.
