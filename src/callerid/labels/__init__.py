"""Labels: a business's displayed identity (name + logo). Dynamic ones are used by call records,
static ones (and dynamic ones) by feature sets."""
