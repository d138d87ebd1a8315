# "seconds peak_MB" from a GNU `time -v` log (wall clock h:mm:ss or m:ss; maximum RSS in MB).
/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; wall = s }
/Maximum resident set size/ { rss = $2 / 1024 }
END { printf "%.2f %.0f\n", wall, rss }
