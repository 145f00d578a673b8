-- Releases kombu's sweep mutex (KEYS[1]) only if we still own it (ARGV[1]).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
